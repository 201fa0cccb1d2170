"""The dead-letter topic as operators see it, for `cdc dlq` and the console alike: what is
parked in it (and whether a replay has taken it), the keys held behind it, and a replay of
what is not replayed yet through the handlers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cdc.settings import Settings

if TYPE_CHECKING:
    from cdc.routing import Handler
    from cdc.runtime import Runtime
    from cdc.runtime.dead_letter import Parked
    from cdc.runtime.held_keys import Hold, Slot
    from cdc.tables.config import WatchedTables


def dead_letter_topic(settings: Settings, watched: WatchedTables) -> str:
    return settings.dead_letter_topic or f"{watched.connector.topic_prefix}.dlq"


@dataclass(frozen=True)
class DeadLetters:
    """The dead-letter topic read to its end: ``records`` parked (releases left out, oldest
    first), how far the replay group got on each partition, and the keys held."""

    topic: str
    records: list[Parked]
    replayed_up_to: dict[int, int] = field(default_factory=dict)
    held: dict[Slot, Hold] = field(default_factory=dict)

    def replayed(self, parked: Parked) -> bool:
        return parked.offset < self.replayed_up_to.get(parked.partition, 0)


def read_dead_letters(
    settings: Settings, watched: WatchedTables, workload: str | None = None
) -> DeadLetters:
    """What `cdc dlq list` shows: ``workload``'s topic (its settings'), else the consumer's."""
    from cdc.runtime.dead_letter_tail import fold
    from cdc.runtime.held_keys import HeldKeys
    from cdc.runtime.replay import DeadLetterTopic, replay_group
    from cdc.runtime.workloads import resolve

    if workload is not None:
        settings = resolve(workload, settings, watched).settings
    topic = dead_letter_topic(settings, watched)
    with DeadLetterTopic(settings, topic, limits=watched.limits) as dlq:
        records = list(dlq)
    held = HeldKeys()
    for record in records:
        fold(held, record)
    parked = [p for p in records if p.release is None]
    done = _committed(settings, replay_group(settings), topic, {p.partition for p in records})
    return DeadLetters(topic, parked, done, held.snapshot())


def _committed(settings: Settings, group: str, topic: str, partitions: set[int]) -> dict[int, int]:
    """How far ``group`` (the replay group) committed on each partition of ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    if not partitions:
        return {}
    consumer = Consumer(settings.kafka_config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        asked = [TopicPartition(topic, p) for p in sorted(partitions)]
        return {
            tp.partition: tp.offset
            for tp in consumer.committed(asked, timeout=10)
            if tp.offset >= 0
        }
    finally:
        consumer.close()


def replay_dead_letters(
    settings: Settings,
    watched: WatchedTables,
    found: list[Handler],
    workload: str | None = None,
    started: Callable[[str, int], Any] = lambda topic, pending: None,
    on_each: Callable[[Parked, str], Any] | None = None,
) -> Counter[str]:
    """What `cdc dlq replay` does: each parked record not yet replayed back through the
    handler that failed it (`cdc.runtime.replay.replay`: the outcomes). With ``workload``,
    with its settings and handlers; records of other workloads' handlers are left to their
    own replay. ``started`` is told the topic and how many records are to be read."""
    from cdc.routing import Router
    from cdc.runtime import Runtime
    from cdc.runtime.replay import DeadLetterTopic, replay, replay_group
    from cdc.runtime.workloads import plan

    settings = settings.model_copy(update={"http_port": None})  # no probes for a one-off
    elsewhere: set[str] = set()
    if workload is None:
        runtime = Runtime(settings, watched, Router(found, watched.tables))
    else:
        ((lane, mine),) = plan(settings, watched, found, [workload])
        elsewhere = {h.name for h in found} - {h.name for h in mine}
        settings = lane.settings
        runtime = Runtime(
            settings, watched, Router(mine, watched.tables), workload=lane.name, rate=lane.rate
        )
    topic = dead_letter_topic(settings, watched)
    try:
        _read_orders(runtime)
        with DeadLetterTopic(settings, topic, replay_group(settings), watched.limits) as dlq:
            started(topic, dlq.pending)
            return replay(runtime, dlq, on_each, elsewhere)
    finally:
        runtime.close()


def _read_orders(runtime: Runtime) -> None:
    """The operators' orders in force, for the replay to let skipped records go."""
    import threading

    from cdc.errors import CdcError

    tail = runtime.control_tail
    if tail is None:
        return
    stop = threading.Event()
    timer = threading.Timer(30.0, stop.set)
    timer.start()
    try:
        if not tail.start().wait(stop):
            raise CdcError(f"{tail.topic}: not read to its end within 30 s")
    finally:
        timer.cancel()
