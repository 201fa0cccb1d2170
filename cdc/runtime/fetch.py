"""Fetch: the Kafka consumer, its rebalance callbacks, a batch at a time, and flow control."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

import structlog
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from cdc.errors import KafkaRefused
from cdc.runtime.metrics import Metrics
from cdc.runtime.offsets import Offsets
from cdc.runtime.records import names
from cdc.runtime.work import PartitionWork

_NONE: Mapping[tuple[str, int], int] = {}
log = structlog.get_logger("cdc.consumer")
BATCH = 500
_QUIET_ERRORS = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF)
_REFUSED = (KafkaError._AUTHENTICATION, KafkaError._SSL)


class Fetcher:
    """Fetches batches of at most ``window`` records in flight, for the partitions
    ``offsets`` holds; raises `KafkaRefused` once the broker has refused our credentials or
    certificate for ``refused_timeout_s`` with no broker taking us meanwhile."""

    def __init__(
        self,
        config: dict[str, object],
        offsets: Offsets,
        metrics: Metrics,
        *,
        window: int,
        refused_timeout_s: float,
    ) -> None:
        self._config = config
        self._offsets = offsets
        self._metrics = metrics
        self._window = window
        self._refused_timeout_s = refused_timeout_s
        self._refused: tuple[float, str] | None = None  # since when, why

    def connect(self) -> Consumer:
        return Consumer({**self._config, "stats_cb": self._stats, "error_cb": self._kafka_error})

    def subscribe(
        self, consumer: Consumer, topics: list[str], assigned: Callable[[], None] | None = None
    ) -> None:
        """``assigned``: told after partitions are assigned, before their records come."""
        offsets = self._offsets

        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            offsets.assigned(consumer, partitions)
            if assigned is not None and partitions:
                assigned()

        consumer.subscribe(
            topics, on_assign=on_assign, on_revoke=offsets.revoked, on_lost=offsets.lost
        )

    def fetch(self, consumer: Consumer, in_flight: int) -> list[Message]:
        """What librdkafka holds, up to the room left in the window, without waiting; when
        it holds nothing, wait up to 0.2 s for the first record. (``consume(n, timeout)``
        alone waits for all ``n`` until the timeout: a change arriving alone would sit there
        for it.) Only records of partitions still ours, without errors."""
        if self._refused is not None:
            since, reason = self._refused
            if time.monotonic() - since > self._refused_timeout_s:
                raise KafkaRefused(time.monotonic() - since, reason)
        most = max(1, min(BATCH, self._window - in_flight))
        batch = consumer.consume(most, 0)
        if not batch:
            batch = consumer.consume(1, 0.2)
            if batch and most > 1:
                batch += consumer.consume(most - 1, 0)
        works = self._offsets.works
        kept = []
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.code() not in _QUIET_ERRORS:
                    log.warning("kafka.error", error=str(err))
            elif (msg.topic(), msg.partition()) in works:  # else the new owner reads it
                kept.append(msg)
        return kept

    def flow(self, consumer: Consumer, waiting: Mapping[tuple[str, int], int] = _NONE) -> int:
        """Once the in-flight window is full, pause the partitions holding their share of it;
        resume one when half of its share is done, or half the window; return the records in
        flight. Per partition, not all at once: a global pause would always hand the next
        fetch's first partition the whole window while the partitions behind it starve. Only
        when full: pausing drops what librdkafka prefetched, to be fetched again.

        ``waiting``: per partition, records held until records of other partitions come (a
        transaction's): they do not count, or a transaction whose rest is in a paused
        partition would never complete; up to four windows of them, beyond which they do."""
        works = list(self._offsets.works.values())
        window = self._window
        share = max(1, window // max(1, len(works)))
        if sum(waiting.values()) > 4 * window:
            waiting = _NONE
        real = [work.in_flight for work in works]
        counts = [
            n - waiting.get((w.topic, w.partition), 0) for w, n in zip(works, real, strict=True)
        ]
        total = sum(counts)
        pause: list[PartitionWork] = []
        resume: list[PartitionWork] = []
        for work, n in zip(works, counts, strict=True):
            if not work.paused and n >= share and total >= window:
                pause.append(work)
            elif work.paused and (n <= share // 2 or total <= window // 2):
                resume.append(work)
        for changed, paused in ((pause, True), (resume, False)):
            if not changed:
                continue
            for work in changed:
                work.paused = paused
            tps = [TopicPartition(w.topic, w.partition) for w in changed]
            (consumer.pause if paused else consumer.resume)(tps)
            log.debug("fetch.paused" if paused else "fetch.resumed", partitions=names(tps))
        self._metrics.paused.set(sum(w.paused for w in works))
        self._metrics.in_flight.set(sum(real))
        return total

    def _kafka_error(self, err: KafkaError) -> None:
        """librdkafka's client-level errors. Refused credentials or certificates are counted
        from the first; anything else (a broker down, a timeout) is waited out."""
        if err.code() in _REFUSED:
            if self._refused is None:
                self._refused = (time.monotonic(), str(err))
            log.error("kafka.refused", error=str(err))
        elif err.code() not in _QUIET_ERRORS:
            log.warning("kafka.error", error=str(err))

    def _stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        self._metrics.librdkafka_stats(stats)
        if any(b.get("state") == "UP" for b in stats.get("brokers", {}).values()):
            self._refused = None  # a broker took us after all: whatever it was has passed
