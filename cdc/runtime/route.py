"""Gate and route: the delivery gate, each event's handlers, and the unrouted policy."""

from __future__ import annotations

import threading

import structlog
from confluent_kafka import Message

from cdc.events import Change, DomainEvent, Event, Op, TransactionEvent
from cdc.routing import Router
from cdc.runtime.park import Parker
from cdc.runtime.records import Decoded, Handled, Taken, where
from cdc.runtime.runs import Stopping
from cdc.runtime.tally import Tally

log = structlog.get_logger("cdc.consumer")
# The ops of a change of rows (Kind.CHANGE), with their metric label.
_ROW_CHANGES = {op: op.value for op in (Op.CREATE, Op.UPDATE, Op.DELETE)}


class RouteStage:
    def __init__(
        self,
        router: Router,
        parker: Parker,
        unrouted: str,
        outbox_table: str,
        stop: threading.Event,
    ) -> None:
        self.router = router
        self._parker = parker
        self._park_unrouted = unrouted == "dead-letter"
        self._outbox_table = outbox_table
        self._stop = stop
        self._warned: set[str] = set()

    def batch(self, items: list[Handled | Decoded], tally: Tally) -> list[Handled | Taken]:
        """The batch in order: each decoded record routed or finished; cut short where the
        consumer stops while the dead-letter topic cannot be reached."""
        out: list[Handled | Taken] = []
        routes_for = self.router.routes_for
        for item in items:
            if isinstance(item, Handled):
                out.append(item)
                continue
            msg, at, event = item
            # Most records: a row changed (the gate admits every one), and it has handlers.
            if type(event) is Change and event.op in _ROW_CHANGES:
                table = event.table
                routes = routes_for(event, table)
                if routes:
                    out.append(Taken(msg, at, event, routes, table, _ROW_CHANGES[event.op]))
                    continue
            try:
                out.append(self.one(msg, at, event, tally))
            except Stopping:
                break
        return out

    def one(
        self,
        msg: Message,
        at: tuple[str, int, int],
        event: Event,
        tally: Tally,
        only: str | None = None,
    ) -> Handled | Taken:
        """A finished record (held back, filtered, unrouted), or the event and the handlers
        to run (``only``: just the one of that name)."""
        table, op = self.labels(event)
        if not self.router.gate.admit(event):
            tally.count("held_back", table, op)
            return Handled(*at, event)
        routes = self.router.routes_for(event, table)
        if routes is None:
            return self._unrouted(msg, at, event, tally)
        if only is not None:
            routes = [r for r in routes if r.name == only]
        if not routes:
            tally.count("filtered", table, op)
            return Handled(*at, event)
        assert isinstance(event, Change | DomainEvent | TransactionEvent)
        return Taken(msg, at, event, routes, table, op)

    def labels(self, event: Event) -> tuple[str, str]:
        """The metric labels table and op: for a domain event, the outbox and its type."""
        if isinstance(event, DomainEvent):
            return self._outbox_table, event.type
        return event.table, event.op.value if isinstance(event, Change) else ""

    def _unrouted(
        self, msg: Message, at: tuple[str, int, int], event: Event, tally: Tally
    ) -> Handled:
        """No handler for the record's table or event type: skipped and counted (with a
        warning the first time), or dead-lettered, as ``settings.unrouted`` says."""
        table, op = self.labels(event)
        tally.count("unrouted", table, op)
        if isinstance(event, DomainEvent):
            what, error = f"event type {event.type!r}", "UnknownEventType"
            detail = {"event_type": event.type, "aggregate_type": event.aggregate_type}
        else:
            what, error, detail = f"table {table!r}", "UnroutedTable", {}
        if self._park_unrouted:
            reason = f"no handler for {what}"
            self._parker.park(msg, reason, error, wait=self._stop.wait, table=table)
            return Handled(*at, event, parked=(reason,))
        if what not in self._warned:
            self._warned.add(what)
            log.warning(
                "record.unrouted",
                **where(msg),
                table=table,
                **detail,
                note=f"no handler for {what}; skipped and counted",
            )
        return Handled(*at, event)
