"""The dead-letter topic: a record no handler could take, byte for byte, with headers that
say where it came from and why it is here.

A parked record is its original plus our headers (and the key once more, as a header), so it
is always larger than it was. A record near the source topic's limit would then no longer fit,
and the consumer could neither park it nor move past it. So the producer takes records of up
to ``RecordLimits.parked`` and the sink makes the dead-letter topic with (or raises it to) a
``max.message.bytes`` as large."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from confluent_kafka import KafkaException

from cdc.runtime.context import Outgoing, Resources
from cdc.topics import LIMIT, ensure_topic

HEADER = "cdc.dlq."


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

    def __init__(self, resources: Resources, topic: str) -> None:
        self.resources = resources
        self.topic = topic
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
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if r.timestamp_ms is not None:
            context["timestamp"] = str(r.timestamp_ms)
        headers = [(HEADER + k, v.encode()) for k, v in context.items()]
        if r.key is not None:
            headers.append((HEADER + "key", r.key))
        # The original headers stay, after ours, so a replay can restore them.
        return Outgoing(self.topic, r.value, r.key, (*headers, *r.headers))

    def send(self, rejected: Rejected) -> None:
        """Deliver, or raise: the caller must not move past a record it could not park."""
        out = self.record(rejected)
        with self._lock:
            if not self._topic_ready:
                try:
                    ensure_topic(self.resources.settings, self.topic, self.resources.limits.parked)
                except TimeoutError as exc:  # an admin request timed out: waited out
                    raise KafkaException(f"{self.topic}: no answer from the broker") from exc
                self._topic_ready = True
        try:
            self.resources.send([out])
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
