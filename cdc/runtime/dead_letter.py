"""The dead-letter topic: a record no handler could take, byte for byte, with headers that
say where it came from and why it is here.

A parked record is its original plus our headers (and the key once more, as a header), so it
is always larger than it was. A record near the source topic's limit would then no longer fit,
and the consumer could neither park it nor move past it. So the producer takes records of up
to ``RecordLimits.parked`` and the sink makes the dead-letter topic with (or raises it to) a
``max.message.bytes`` as large."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import cast

from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaException, Message

from cdc.runtime.context import Outgoing, Resources
from cdc.runtime.records import record_headers
from cdc.topics import LIMIT, ensure_topic

HEADER = "cdc.dlq."
# A release (`cdc.runtime.held_keys`): a record with no value, the held key's key and these
# headers, the last dead-letter offset its replay read in ``cdc.dlq.release``.
RELEASE = "release"


def release(
    topic: str, partition: int, up_to: int, handler: str, source: str, key: bytes, workload: str
) -> Outgoing:
    """The release of a held key, in the dead-letter partition its parks are in."""
    fields = {RELEASE: str(up_to), "handler": handler, "topic": source, "workload": workload}
    headers = tuple((HEADER + k, v.encode()) for k, v in fields.items())
    return Outgoing(topic, None, key, headers, partition)


@dataclass(frozen=True)
class Rejected:
    """A record on its way to the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    reason: str
    error: str  # the error's type: DecodeError, DeadLetter, UnroutedTable, ...
    handler: str = ""
    table: str = ""
    attempts: int = 0
    timestamp_ms: int | None = None  # the original record's, restored on replay


class DeadLetterSink:
    """Parks records in ``topic``. ``send`` delivers or raises `KafkaException` (an outage, or
    a record over the topic's limit, with what to do about it): never skips a record."""

    def __init__(self, resources: Resources, topic: str, workload: str = "default") -> None:
        self.resources = resources
        self.topic = topic
        self.workload = workload
        self._lock = threading.Lock()
        self._topic_ready = False

    def record(self, r: Rejected) -> Outgoing:
        context = {
            "topic": r.topic,
            "partition": str(r.partition),
            "offset": str(r.offset),
            "table": r.table,
            "handler": r.handler,
            "error": r.error,
            "reason": r.reason[:8000],
            "attempts": str(r.attempts),
            "workload": self.workload,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if r.timestamp_ms is not None:
            context["timestamp"] = str(r.timestamp_ms)
        headers = [(HEADER + k, v.encode()) for k, v in context.items()]
        if r.key is not None:
            headers.append((HEADER + "key", r.key))
        # The original headers stay, after ours, so a replay can restore them.
        return Outgoing(self.topic, r.value, r.key, (*headers, *r.headers))

    def send(self, rejected: Rejected) -> tuple[int, int]:
        """Deliver, or raise: the caller must not move past a record it could not park.
        Where it landed: partition, offset."""
        out = self.record(rejected)
        with self._lock:
            if not self._topic_ready:
                try:
                    ensure_topic(self.resources.settings, self.topic, self.resources.limits.parked)
                except TimeoutError as exc:  # an admin request timed out: waited out
                    raise KafkaException(f"{self.topic}: no answer from the broker") from exc
                self._topic_ready = True
        try:
            ((partition, offset),) = self.resources.send([out])
        except KafkaException as exc:
            size = len(out.value or b"") + len(out.key or b"")
            size += sum(len(k) + len(v or b"") for k, v in out.headers)
            hint = (
                f"; raise the topic's {LIMIT} above {size}"
                if "too large" in str(exc).lower()
                else ""
            )
            raise KafkaException(
                f"{self.topic}: a parked record of {size} bytes not delivered{hint}: {exc}"
            ) from exc
        return partition, offset


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
    workload: str = ""
    # A release of a held key, not a parked record: the last offset its replay read.
    release: int | None = None

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
            workload=text("workload"),
            release=number(RELEASE) if RELEASE in ours else None,
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
