"""Rewind: re-run a workload, or one of its handlers, from a point in time or an offset, while
other workloads keep their positions (each has a consumer group of its own).

An order ``rewind/<workload>/<handler>`` (``*``: every handler) in the control topic is
carried out by whichever consumer owns each partition: it lets the partition's running work
end, moves the partition back (never forward) and commits the new position, then writes
``rewound/<workload>/<id>/<topic>/<partition>`` so that no consumer carries it out on that
partition again, after a restart or a rebalance. A crash between the commit and that mark
only moves the partition back once more: the ledger keeps effects single.

Rewinding one handler: the records below where the partition was (``until``) run that
handler alone; from ``until`` on, every handler runs as before."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from cdc.errors import ConfigError

if TYPE_CHECKING:
    from cdc.runtime.offsets import Offsets

log = structlog.get_logger("cdc.consumer")

EVERY = "*"


@dataclass(frozen=True)
class Rewind:
    """An operator's rewind: of ``handler`` (`EVERY`: the workload) to the first record at
    or after ``to_ms``, or to ``offset`` on each partition."""

    id: str
    handler: str
    to_ms: int | None
    offset: int | None
    reason: str = ""
    by: str = ""
    at: str = ""

    def encode(self) -> bytes:
        fields = ("id", "to_ms", "offset", "reason", "by", "at")
        return json.dumps({f: getattr(self, f) for f in fields}).encode()

    @classmethod
    def parse(cls, handler: str, value: bytes) -> Rewind:
        d = json.loads(value)
        return cls(
            str(d["id"]),
            handler,
            d.get("to_ms"),
            d.get("offset"),
            str(d.get("reason", "")),
            str(d.get("by", "")),
            str(d.get("at", "")),
        )


def parse_point(to: str) -> tuple[int | None, int | None]:
    """Where a rewind goes back to: (milliseconds since the epoch, None) for an ISO 8601 time
    (UTC when it names no zone), (None, offset) for a number."""
    if to.strip().isdigit():
        return None, int(to)
    try:
        at = dt.datetime.fromisoformat(to.strip())
    except ValueError:
        raise ConfigError("rewind", [f"{to!r} is neither an ISO 8601 time nor an offset"]) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return int(at.timestamp() * 1000), None


def rewind_key(workload: str, handler: str | None) -> str:
    return f"rewind/{workload}/{handler or EVERY}"


def rewound_key(workload: str, rewind_id: str, topic: str, partition: int) -> str:
    return f"rewound/{workload}/{rewind_id}/{topic}/{partition}"


class Rewinds:
    """The rewinds ordered for one workload and the partitions that carried them out."""

    def __init__(self, workload: str = "") -> None:
        self.workload = workload
        self.orders: dict[str, Rewind] = {}  # by handler (or EVERY): the latest
        self.done: set[tuple[str, str, int]] = set()  # rewind id, topic, partition
        # A handler's rewind per partition: records below `until` run that handler alone.
        self.windows: dict[tuple[str, int], tuple[str, int]] = {}

    def fold(self, kind: str, target: str, value: bytes | None) -> None:
        if kind == "rewind":
            if value is None:
                self.orders.pop(target, None)
                return
            rewind = self.orders[target] = Rewind.parse(target, value)
            log.warning(
                "control.rewind",
                handler=target,
                to_ms=rewind.to_ms,
                offset=rewind.offset,
                reason=f"{rewind.reason} ({rewind.by}, {rewind.at})",
            )
            return
        rewind_id, topic, partition = target.rsplit("/", 2)
        self.done.add((rewind_id, topic, int(partition)))
        if value is not None:
            # The latest rewind of a partition decides what its re-read records run: a
            # workload's ends an earlier handler's window.
            mark = json.loads(value)
            if mark.get("handler", EVERY) != EVERY:
                self.windows[topic, int(partition)] = (mark["handler"], int(mark["until"]))
            else:
                self.windows.pop((topic, int(partition)), None)

    def pending(self, topic: str, partition: int) -> list[Rewind]:
        return [r for r in self.orders.values() if (r.id, topic, partition) not in self.done]

    def only(self, topic: str, partition: int, offset: int) -> str | None:
        """The one handler a record runs, when a handler's rewind re-reads it."""
        window = self.windows.get((topic, partition))
        return window[0] if window is not None and offset < window[1] else None


def carry_out(
    consumer: Consumer,
    offsets: Offsets,
    rewinds: Rewinds,
    mark: Callable[[str, bytes], None],
) -> bool:
    """(Consumer thread.) Every rewind not yet carried out on a partition this consumer owns;
    ``mark(key, value)`` writes to the control topic (and raises unless it is there). False
    when a partition could not be moved yet (not fetching yet): to be tried again."""
    done = True
    for topic, partition in list(offsets.works):
        for rewind in rewinds.pending(topic, partition):
            try:
                moved = _carry_out(consumer, offsets, rewinds, rewind, (topic, partition), mark)
            except (KafkaException, TypeError, ValueError) as exc:  # tried again later
                log.error(
                    "control.rewind_failed",
                    topic=topic,
                    partition=partition,
                    handler=rewind.handler,
                    error=str(exc),
                )
                moved = None
            if not moved:
                done = False
                break
    return done


def _carry_out(
    consumer: Consumer,
    offsets: Offsets,
    rewinds: Rewinds,
    rewind: Rewind,
    where: tuple[str, int],
    mark: Callable[[str, bytes], None],
) -> bytes | None:
    """One rewind on one partition: its mark, or None when the partition may not be fetching
    yet (just assigned, nothing read: a seek could fail after its work was given up)."""
    topic, partition = where
    tp = TopicPartition(topic, partition)
    (position,) = consumer.position([tp])
    if position.offset < 0 and time.monotonic() - offsets.works[topic, partition].since < 5:
        return None
    low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
    if rewind.to_ms is not None:
        (found,) = consumer.offsets_for_times(
            [TopicPartition(topic, partition, int(rewind.to_ms))], timeout=10
        )
        target = found.offset if found.offset >= 0 else high
    else:
        target = int(rewind.offset) if rewind.offset is not None else high
    # From here the partition's queued work is given up: it must be read again from where
    # it finished (a restart does that from the commit, should the seek fail).
    reached = offsets.renew(consumer, topic, partition)
    # Nothing committed or finished: the partition starts at its beginning anyway.
    until = low if reached is None else reached
    target = max(low, min(target, until))  # back, never forward
    moved = TopicPartition(topic, partition, target)
    try:
        consumer.seek(moved)
    except KafkaException as exc:
        raise RuntimeError(f"{topic}[{partition}]: the rewind's seek failed: {exc}") from exc
    # Carried out here, whatever follows: the records it re-reads run as it says, and it is
    # not carried out here again (with an `until` moved by what ran meanwhile).
    value = json.dumps({"handler": rewind.handler, "to": target, "until": until}).encode()
    rewinds.fold("rewound", f"{rewind.id}/{topic}/{partition}", value)
    try:
        consumer.store_offsets(offsets=[moved])  # or the stored position is committed
        consumer.commit(offsets=[moved], asynchronous=False)
        mark(rewound_key(rewinds.workload, rewind.id, topic, partition), value)
    except KafkaException as exc:  # a rebalance meanwhile: its next owner may rewind it again
        log.warning("control.rewind_unmarked", topic=topic, partition=partition, error=str(exc))
    log.warning(
        "control.rewound",
        topic=topic,
        partition=partition,
        handler=rewind.handler,
        offset_from=until,
        offset_to=target,
    )
    return value
