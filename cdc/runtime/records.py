"""The values the stages hand forward: a routed record (`Taken`) and its fate (`Handled`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from confluent_kafka import Message, TopicPartition

from cdc.events import Event, TransactionEvent
from cdc.routing import Routable, Route
from cdc.runtime.runs import HandlerRun, Later


class Handled(NamedTuple):
    """What became of one record: its event (None if it could not be decoded) and each
    handler's run; ``parked`` says why it went to the dead-letter topic, if it did. (A tuple:
    one is made per record, and a frozen dataclass costs three times as much to make.)"""

    topic: str
    partition: int
    offset: int
    event: Event | None
    runs: tuple[HandlerRun, ...] = ()
    parked: tuple[str, ...] = ()
    read_of: str = ""  # the table of a record held back without decoding it


@dataclass(frozen=True)
class Pending:
    """A record whose handlers ran on the consumer thread until one had to wait before its
    next attempt: the runs so far, and that handler's state."""

    runs: tuple[HandlerRun, ...]
    later: Later | None = None  # None: the next handler has not had to wait (yet)


class Taken:
    """A record on its way through its handlers: where it came from, its event, the routes
    it takes and its metric labels."""

    __slots__ = ("event", "join", "msg", "offset", "op", "partition", "routes", "table", "topic")

    def __init__(
        self,
        msg: Message,
        where: tuple[str, int, int],
        event: Routable | TransactionEvent,  # an END: for the transaction handlers
        routes: list[Route],
        table: str,
        op: str,
    ) -> None:
        self.msg = msg
        self.topic, self.partition, self.offset = where
        self.event = event
        self.routes = routes
        self.table = table
        self.op = op
        # Set when some of its handlers take it in a list: then `routes` are the others,
        # and the record is finished when the join says.
        self.join: Any = None

    def handled(self, runs: tuple[HandlerRun, ...] = (), parked: tuple[str, ...] = ()) -> Handled:
        return Handled(self.topic, self.partition, self.offset, self.event, runs, parked)


# A decoded record on its way to the gate and the router: the message, where it came from,
# and its event.
Decoded = tuple[Message, tuple[str, int, int], Event]
Observer = Callable[[Handled], None]
Wait = Callable[[float], bool]


def coordinates(msg: Message) -> tuple[str, int, int]:
    return str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)


def where(msg: Message) -> dict[str, Any]:
    topic, partition, offset = coordinates(msg)
    return {"topic": topic, "partition": partition, "offset": offset}


def names(partitions: Sequence[TopicPartition]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]


def record_headers(msg: Message) -> tuple[tuple[str, bytes | None], ...]:
    raw = msg.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else raw
    # A header without a value is kept as one: the parked copy is the record as it was.
    return tuple((k, v.encode() if isinstance(v, str) else v) for k, v in pairs)
