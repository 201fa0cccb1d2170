"""The dead-letter topic read back: what is parked there, and replaying it through the
handlers once they are fixed.

A replay group (``<group>.dlq-replay``) remembers how far replays got, so each parked record
is replayed once. A record that fails again is parked again, at the end of the topic, with
its original coordinates: nothing is lost, and the next replay tries it again."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from cdc.runtime.consumer import Handled, Runtime
from cdc.runtime.dead_letter import Parked, release
from cdc.runtime.held_keys import Slot
from cdc.settings import Settings
from cdc.tables.limits import RecordLimits


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
    takes it), ``skipped_by_operator`` (a `cdc skip` order names it: let go, not run)."""
    outcomes: Counter[str] = Counter()
    names = {h.name for h in runtime.router.handlers}
    # Each held key replayed: the dead-letter partition of its records, the last offset.
    replayed: dict[Slot, tuple[int, int]] = {}
    for parked in dead_letters:
        if parked.release is not None:
            dead_letters.mark_done(parked)
            continue
        where = (parked.topic, parked.source_partition, parked.source_offset)
        if elsewhere and parked.handler in elsewhere:
            outcome = "other_workload"
        else:
            skipped = runtime.controls.skipped(parked.handler, where) is not None
            outcome = "skipped_by_operator" if skipped else _replay_one(runtime, parked, names)
            if parked.key is not None and parked.handler:  # else it held nothing
                slot = (parked.handler, parked.topic, parked.key)
                replayed[slot] = (parked.partition, parked.offset)
        dead_letters.mark_done(parked)
        outcomes[outcome] += 1
        if on_each is not None:
            on_each(parked, outcome)
    _release(runtime, dead_letters.topic, replayed)
    return outcomes


def _release(runtime: Runtime, topic: str, replayed: dict[Slot, tuple[int, int]]) -> None:
    """Release each key whose parked changes all went through: it holds no one any more.
    (One parked again is held by this replay too, and stays held.)"""
    held = runtime.held.slots
    releases = [
        release(topic, partition, up_to, handler, source, key, runtime.workload)
        for (handler, source, key), (partition, up_to) in replayed.items()
        if (handler, source, key) not in held
    ]
    for start in range(0, len(releases), 1000):
        runtime.resources.send(releases[start : start + 1000])


def _replay_one(runtime: Runtime, parked: Parked, names: set[str]) -> str:
    original = parked.original()
    if parked.handler and parked.handler not in names:
        runtime.park(
            original,
            f"handler {parked.handler} no longer exists",
            "UnknownHandler",
            handler=parked.handler,
        )
        return "no_handler"
    handled: Handled = runtime.process(original, only=parked.handler or None)
    if handled.parked:
        return "parked_again"
    return "handled" if handled.runs else "skipped"
