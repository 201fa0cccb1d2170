"""Offsets: each partition's finished prefix, stored per batch, committed on revoke."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from cdc.runtime.metrics import Metrics
from cdc.runtime.records import names
from cdc.runtime.work import PartitionWork

log = structlog.get_logger("cdc.consumer")


class Offsets:
    """The work of the partitions this consumer owns, keyed by (topic, partition): the
    position past each one's finished prefix is stored once per batch (the client commits
    what is stored every second), committed when the partition is revoked, and never when
    it is lost. The rebalance methods run on the consumer thread, inside ``consume()``."""

    def __init__(self, metrics: Metrics, deadline_s: float) -> None:
        self.works: dict[tuple[str, int], PartitionWork] = {}
        self._metrics = metrics
        self._deadline_s = deadline_s

    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self.works.setdefault((p.topic, p.partition), PartitionWork(p.topic, p.partition))
        if partitions:
            # librdkafka keeps a partition's pause across losing and regaining it: one
            # paused when the session was lost would never fetch again.
            consumer.resume(partitions)
        self._metrics.assigned.set(len(self.works))
        log.info("partitions.assigned", partitions=names(partitions))

    def revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Give the partitions away cleanly: drop their queued work, let running work end
        (up to the shutdown deadline), then commit how far each got."""
        works = self._release(partitions)
        deadline = time.monotonic() + self._deadline_s
        for work in works:
            work.quiesce(deadline - time.monotonic())
        offsets = [
            TopicPartition(w.topic, w.partition, pos)
            for w in works
            if (pos := w.position) is not None
        ]
        if offsets:
            try:
                # Stored too: once this returns, librdkafka commits each removed
                # partition's stored offset, which, older, would move this commit back.
                consumer.store_offsets(offsets=offsets)
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                log.warning("commit.failed", error=str(exc), partitions=names(offsets))
        log.info("partitions.revoked", partitions=names(partitions), committed=names(offsets))

    def renew(self, consumer: Consumer, topic: str, partition: int) -> int | None:
        """Start a partition's work afresh (a rewind): drop its queued work, let running work
        end (up to the shutdown deadline); the position it reached (its committed offset
        when nothing finished since it was assigned; None when it has none)."""
        tp = TopicPartition(topic, partition)
        position = None
        for work in self._release([tp]):
            work.quiesce(self._deadline_s)
            position = work.position
        self.works[topic, partition] = PartitionWork(topic, partition)
        self._metrics.assigned.set(len(self.works))
        consumer.resume([tp])  # a partition paused for the window fetches again
        if position is None:
            (committed,) = consumer.committed([tp], timeout=10)
            position = committed.offset if committed.offset >= 0 else None
        return position

    def lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else owns them already: committing could move their offsets backwards.
        self._release(partitions)
        log.warning("partitions.lost", partitions=names(partitions))

    def _release(self, partitions: Sequence[TopicPartition]) -> list[PartitionWork]:
        works = []
        for p in partitions:
            work = self.works.pop((p.topic, p.partition), None)
            if work is not None:
                work.give_up()
                works.append(work)
            self._metrics.forget_partition(p.topic, p.partition)
        self._metrics.assigned.set(len(self.works))
        return works

    def store(self, consumer: Consumer) -> None:
        """Store each partition's position that moved since the last batch; the client
        commits stored positions every second, and on close."""
        moved = []
        for work in list(self.works.values()):
            position = work.to_store()
            if position is not None:
                moved.append(TopicPartition(work.topic, work.partition, position))
        if not moved:
            return
        try:
            consumer.store_offsets(offsets=moved)
        except KafkaException:
            # A partition revoked meanwhile refuses the whole call: the others one by one.
            for tp in moved:
                try:
                    consumer.store_offsets(offsets=[tp])
                except KafkaException as exc:  # revoked meanwhile: the new owner goes on
                    log.debug("store.skipped", error=str(exc))

    def shut_down(self, deadline: float) -> None:
        """Give up every partition's queued work and wait for its running work, until
        ``deadline`` (monotonic)."""
        for work in list(self.works.values()):
            work.give_up()
            work.quiesce(deadline - time.monotonic())

    def oldest_unfinished(self, table_of: Callable[[str], str]) -> None:
        """Per table, how long ago its oldest fetched and unfinished record was produced."""
        oldest: dict[str, float] = {}
        now_ms = time.time() * 1000
        for (topic, _), work in self.works.items():
            table = table_of(topic) or topic
            ts = work.oldest_ms
            # 0: no record waits (or it has no timestamp, librdkafka's -1)
            age = (now_ms - ts) / 1000 if ts is not None and ts > 0 else 0.0
            oldest[table] = max(oldest.get(table, 0.0), age)
        self._metrics.set_oldest_unfinished(oldest)
