"""The dead-letter topic: a record no handler could take, byte for byte, with headers that
say where it came from and why it is here."""

from __future__ import annotations

import time
from dataclasses import dataclass

from cdc.runtime.context import Outgoing, Resources

HEADER = "cdc.dlq."


@dataclass(frozen=True)
class Rejected:
    """A record on its way to the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    reason: str
    error: str  # the error's type: DecodeError, DeadLetter, UnroutedTable, ...
    handler: str = ""
    table: str = ""
    attempts: int = 0


class DeadLetterSink:
    def __init__(self, resources: Resources, topic: str) -> None:
        self.resources = resources
        self.topic = topic

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
        headers = [(HEADER + k, v.encode()) for k, v in context.items()]
        if r.key is not None:
            headers.append((HEADER + "key", r.key))
        # The original headers stay, after ours, so a replay can restore them.
        return Outgoing(self.topic, r.value, r.key, (*headers, *r.headers))

    def send(self, rejected: Rejected) -> None:
        """Deliver, or raise: the caller must not move past a record it could not park."""
        self.resources.send([self.record(rejected)])
