"""Drop, before decoding, what no handler takes: unwanted snapshot reads, unread topics."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from confluent_kafka import Message

from cdc.decoding import Decoder
from cdc.events import Kind
from cdc.routing import Router
from cdc.runtime.records import Handled, coordinates, where
from cdc.runtime.subscription import Subscription
from cdc.runtime.tally import Labels, Tally

# A tombstone has only its key to decode, and a key that cannot be read is parked: tombstones
# go on to be decoded (the gate holds them back after that).
log = structlog.get_logger("cdc.consumer")

# What to do with a topic's records before decoding them: None, decode them all; else a
# function of the value giving the labels of a record to drop, or None to decode it.
Sieve = Callable[[bytes | None], Labels | None] | None


class Drops:
    """Per topic, a sieve made once; per batch, the records it keeps, in order, and a
    finished `Handled` in place of each it drops."""

    def __init__(
        self, decoder: Decoder, router: Router, subscription: Subscription, unrouted: str
    ) -> None:
        self._peek = decoder.peek_op
        self._router = router
        self._subscription = subscription
        self._skip_unrouted = unrouted == "skip"
        self._sieves: dict[str, Sieve] = {}

    def batch(self, msgs: list[Message], tally: Tally) -> list[Handled | Message]:
        kept: list[Handled | Message] = []
        dropped: list[Labels] = []
        sieves = self._sieves
        for msg in msgs:
            topic = msg.topic()
            sieve = sieves[topic] if topic in sieves else self._sieve(str(topic), msg)
            labels = None if sieve is None else sieve(msg.value())
            if labels is None:
                kept.append(msg)
                continue
            dropped.append(labels)
            table, _, outcome = labels
            read_of = table if outcome == "held_back" else ""  # a snapshot read
            kept.append(Handled(*coordinates(msg), None, read_of=read_of))
        if dropped:
            tally.counts.update(dropped)
        return kept

    def _sieve(self, topic: str, first: Message) -> Sieve:
        outbox, table = self._subscription.kind(topic)
        sieve: Sieve = None
        if outbox or topic == self._subscription.transaction_topic:
            pass  # a domain event's type, a BEGIN or an END: in its value, so decoded
        elif table not in self._router.routes:
            if self._skip_unrouted:
                log.warning(
                    "record.unrouted",
                    **where(first),
                    table=table,
                    note=f"no handler for table {table!r}; skipped and counted",
                )
                sieve = self._unrouted(table)
        else:
            if not self._router.gate.admits(Kind.SNAPSHOT_READ, table):
                sieve = self._reads_held_back(table)
        self._sieves[topic] = sieve
        return sieve

    def _unrouted(self, table: str) -> Sieve:
        peek = self._peek

        def sieve(value: bytes | None) -> Labels | None:
            return table, "" if value is None else peek(value) or "", "unrouted"

        return sieve

    def _reads_held_back(self, table: str) -> Sieve:
        peek = self._peek
        read: Labels = (table, "r", "held_back")

        def sieve(value: bytes | None) -> Labels | None:
            return read if value is not None and peek(value) == "r" else None

        return sieve
