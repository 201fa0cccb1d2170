"""The dead-letter topic read back: what is parked there, and replaying it through the
handlers once they are fixed.

A replay group (``<group>.dlq-replay``) remembers how far replays got, so each parked record
is replayed once. A record that fails again is parked again, at the end of the topic, with
its original coordinates: nothing is lost, and the next replay tries it again."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from cdc.runtime.consumer import Handled, Runtime, record_headers
from cdc.runtime.dead_letter import HEADER
from cdc.settings import Settings
from cdc.tables.limits import RecordLimits


@dataclass(frozen=True)
class Parked:
    """A record in the dead-letter topic, and what its headers say about it."""

    partition: int  # where it is parked
    offset: int
    parked_at: dt.datetime | None
    topic: str  # where it came from
    source_partition: int
    source_offset: int
    table: str
    handler: str
    error: str
    reason: str
    attempts: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]  # the original record's own headers
    source_timestamp_ms: int | None = None

    @classmethod
    def of(cls, msg: Message) -> Parked:
        pairs = record_headers(msg)
        ours = {k[len(HEADER) :]: v for k, v in pairs if k.startswith(HEADER)}
        theirs = tuple((k, v) for k, v in pairs if not k.startswith(HEADER))

        def text(name: str) -> str:
            return (ours.get(name) or b"").decode(errors="replace")

        def number(name: str) -> int:
            try:
                return int(text(name))
            except ValueError:
                return -1

        kind, ts = msg.timestamp()
        return cls(
            partition=int(msg.partition() or 0),
            offset=int(msg.offset() or 0),
            parked_at=dt.datetime.fromtimestamp(ts / 1000, dt.UTC) if kind else None,
            topic=text("topic"),
            source_partition=number("partition"),
            source_offset=number("offset"),
            table=text("table"),
            handler=text("handler"),
            error=text("error"),
            reason=text("reason"),
            attempts=max(number("attempts"), 0),
            key=msg.key(),
            value=msg.value(),
            headers=theirs,
            source_timestamp_ms=number("timestamp") if "timestamp" in ours else None,
        )

    def original(self) -> Message:
        """The record as it was read from its own topic, for the decoder and the runtime."""
        return cast(Message, _Original(self))  # the runtime only calls Message's getters


class _Original:
    def __init__(self, p: Parked) -> None:
        self._p = p

    def topic(self) -> str:
        return self._p.topic

    def partition(self) -> int:
        return self._p.source_partition

    def offset(self) -> int:
        return self._p.source_offset

    def key(self) -> bytes | None:
        return self._p.key

    def value(self) -> bytes | None:
        return self._p.value

    def headers(self) -> list[tuple[str, bytes | None]]:
        return list(self._p.headers)

    def timestamp(self) -> tuple[int, int]:
        ts = self._p.source_timestamp_ms
        return (0, -1) if ts is None else (TIMESTAMP_CREATE_TIME, ts)

    def error(self) -> None:
        return None


class DeadLetterTopic:
    """Reads the dead-letter topic from where ``group`` got to (the beginning without one)
    up to its end as of opening."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        group: str | None = None,
        limits: RecordLimits | None = None,
    ) -> None:
        self.topic = topic
        limits = limits or RecordLimits()
        self.group = group
        self._consumer = Consumer(
            settings.kafka_config(
                **{
                    "group.id": group or f"cdc-dlq-list-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "enable.partition.eof": True,
                    **limits.consumer(limits.parked),
                }
            )
        )
        # partition -> (start, end): what is left to read.
        self.ranges: dict[int, tuple[int, int]] = {}
        meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return  # nothing was ever parked
        partitions = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        committed = (
            self._consumer.committed(partitions, timeout=10) if group else [None] * len(partitions)
        )
        for tp, done in zip(partitions, committed, strict=True):
            low, high = self._consumer.get_watermark_offsets(tp, timeout=10)
            start = done.offset if done is not None and done.offset >= 0 else low
            if start < high:
                self.ranges[tp.partition] = (max(start, low), high)

    def replayed_up_to(self, group: str) -> dict[int, int]:
        """How far ``group`` replayed each partition (records below are replayed)."""
        partitions = [TopicPartition(self.topic, p) for p in self.ranges]
        if not partitions:
            return {}
        return {
            tp.partition: tp.offset
            for tp in self._consumer.committed(partitions, timeout=10)
            if tp.offset >= 0
        }

    @property
    def pending(self) -> int:
        return sum(end - start for start, end in self.ranges.values())

    def __iter__(self) -> Iterator[Parked]:
        left = dict(self.ranges)
        if not left:
            return
        self._consumer.assign([TopicPartition(self.topic, p, s) for p, (s, _) in left.items()])
        while left:
            msg = self._consumer.poll(1.0)
            if msg is None:
                continue
            err = msg.error()
            partition = int(msg.partition() or 0)
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    left.pop(partition, None)
                    continue
                raise KafkaException(err)
            offset = int(msg.offset() or 0)
            end = left.get(partition, (0, 0))[1]
            if offset >= end:
                left.pop(partition, None)  # parked after we opened: the next run's
                continue
            yield Parked.of(msg)
            if offset + 1 >= end:
                left.pop(partition, None)

    def mark_done(self, parked: Parked) -> None:
        """Commit past ``parked`` for the group: a later replay starts after it."""
        self._consumer.commit(
            offsets=[TopicPartition(self.topic, parked.partition, parked.offset + 1)],
            asynchronous=False,
        )

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> DeadLetterTopic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replay_group(settings: Settings) -> str:
    return f"{settings.group_id}.dlq-replay"


def replay(
    runtime: Runtime,
    dead_letters: DeadLetterTopic,
    on_each: Callable[[Parked, str], Any] | None = None,
    elsewhere: set[str] | None = None,
) -> Counter[str]:
    """Run each parked record through the handler that failed it (every handler of its
    table when it never got that far). Outcomes: ``handled``, ``parked_again``,
    ``no_handler`` (the handler is gone: parked again), ``skipped`` (no handler wants it),
    ``other_workload`` (its handler is one of ``elsewhere``: another workload's replay
    takes it)."""
    outcomes: Counter[str] = Counter()
    names = {h.name for h in runtime.router.handlers}
    for parked in dead_letters:
        if elsewhere and parked.handler in elsewhere:
            outcome = "other_workload"
        else:
            outcome = _replay_one(runtime, parked, names)
        dead_letters.mark_done(parked)
        outcomes[outcome] += 1
        if on_each is not None:
            on_each(parked, outcome)
    return outcomes


def _replay_one(runtime: Runtime, parked: Parked, names: set[str]) -> str:
    original = parked.original()
    if parked.handler and parked.handler not in names:
        runtime.park(original, f"handler {parked.handler} no longer exists", "UnknownHandler")
        return "no_handler"
    handled: Handled = runtime.process(original, only=parked.handler or None)
    if handled.parked:
        return "parked_again"
    return "handled" if handled.runs else "skipped"
