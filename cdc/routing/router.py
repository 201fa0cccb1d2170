"""Which handlers an event goes to: changes by table, domain events by type; the routing
table built from the handlers and the watched-tables file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdc.events import (
    Change,
    Changes,
    Delivery,
    DeliveryGate,
    DomainEvent,
    Event,
    Op,
    TransactionEvent,
)
from cdc.routing.declared import EventHandler, Handler, TableHandler, TransactionHandler
from cdc.tables.config import TableOptions

Routable = Change | DomainEvent
# What one handler call is given: a change, a domain event, or changes taken together.
Runnable = Routable | Changes


@dataclass(frozen=True)
class Route:
    """A handler with its snapshot policy resolved against the table's options."""

    handler: Handler
    snapshot_reads: bool = False
    # Read for every record: set once, not looked up through the handler each time.
    name: str = field(init=False, compare=False, repr=False)
    # A table handler of single changes without a row model: it takes the change as it is.
    plain: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        h = self.handler
        plain = isinstance(h, TableHandler) and h.model is None and h.batch is None
        object.__setattr__(self, "name", h.name)
        object.__setattr__(self, "plain", plain)

    @classmethod
    def of(cls, handler: Handler, tables: Mapping[str, TableOptions]) -> Route:
        """A table handler's own snapshot choice, else its table's option in the file."""
        if not isinstance(handler, TableHandler):
            return cls(handler)
        chosen = handler.snapshot_reads
        if chosen is None:
            chosen = tables.get(handler.table, TableOptions()).snapshot_reads
        return cls(handler, chosen)

    @property
    def batch(self) -> int | None:
        """For a handler that takes a list of changes: how many at most."""
        h = self.handler
        return h.batch if isinstance(h, TableHandler) else None

    @property
    def grouped(self) -> bool:
        """Whether the handler takes changes together (a batch, a transaction, a key's
        changes debounced)."""
        h = self.handler
        return isinstance(h, TransactionHandler) or (
            isinstance(h, TableHandler) and (h.batch is not None or h.debounce_s is not None)
        )

    def wants(self, event: Routable) -> bool:
        h = self.handler
        if isinstance(h, EventHandler):
            return isinstance(event, DomainEvent) and event.type == h.event_type
        if isinstance(h, TransactionHandler):
            return isinstance(event, Change) and h.wants(event)
        return isinstance(event, Change) and h.wants(event, self.snapshot_reads)

    def by_op(self, op: Op) -> bool:
        """Whether `wants` says the same of every change with this op (not so where the
        handler watches some columns of updates)."""
        h = self.handler
        return not (isinstance(h, TableHandler) and h.columns is not None and op is Op.UPDATE)

    def typed(self, event: Runnable) -> Any:
        """The event as the handler's model types it; pydantic's ValidationError if it does
        not fit. A handler of lists gets a list (of one, for a change handled alone: a
        dead letter replayed)."""
        h = self.handler
        if isinstance(h, EventHandler):
            assert isinstance(event, DomainEvent)
            return h.typed(event)
        if isinstance(h, TransactionHandler):
            return event if isinstance(event, Changes) else Changes([event])  # type: ignore[list-item]
        if isinstance(event, Changes):
            return [h.typed(c) for c in event]
        assert isinstance(event, Change)
        return [h.typed(event)] if h.batch is not None else h.typed(event)


class Router:
    """Routes per table, and the delivery gate they imply: a table's snapshot reads or
    truncates are let through only when one of its handlers takes them."""

    def __init__(
        self, handlers: Iterable[Handler], tables: Mapping[str, TableOptions] | None = None
    ) -> None:
        tables = tables or {}
        self.grouped = False  # whether a handler takes changes together
        self.routes: dict[str, list[Route]] = {}
        self.event_routes: dict[str, list[Route]] = {}
        # Handlers of whole transactions: each also gets the transaction topic's END records.
        self.transaction_routes: list[Route] = []
        # A table's routes for an op, where they depend on the op alone: found once.
        self._by_op: dict[tuple[str, Op], list[Route]] = {}
        for handler in handlers:
            if isinstance(handler, EventHandler):
                self.event_routes.setdefault(handler.event_type, []).append(Route(handler))
            elif isinstance(handler, TransactionHandler):
                route = Route(handler)
                self.transaction_routes.append(route)
                for table in sorted(handler.tables):
                    self.routes.setdefault(table, []).append(route)
                self.grouped = True
            else:
                self.routes.setdefault(handler.table, []).append(Route.of(handler, tables))
                self.grouped |= handler.batch is not None or handler.debounce_s is not None
        self.gate = DeliveryGate(
            {
                table: Delivery(
                    snapshot_reads=any(r.snapshot_reads for r in routes),
                    # A transaction's END counts its truncates: its handler gets them.
                    truncates=any(
                        isinstance(r.handler, TransactionHandler)
                        or (isinstance(r.handler, TableHandler) and Op.TRUNCATE in r.handler.ops)
                        for r in routes
                    ),
                )
                for table, routes in self.routes.items()
            },
            transactions=bool(self.transaction_routes),
        )

    @property
    def handlers(self) -> list[Handler]:
        every = [*self.routes.values(), *self.event_routes.values()]
        # A transaction handler is routed from each of its tables: listed once.
        return list(dict.fromkeys(r.handler for routes in every for r in routes))

    def tables(self) -> list[str]:
        return list(self.routes)

    def event_types(self) -> list[str]:
        return list(self.event_routes)

    def routes_for(self, event: Event, table: str | None = None) -> list[Route] | None:
        """The routes that want this event; None when no handler exists for its table (or
        its event type). ``table``: the event's, when the caller has it already. (The list
        may be shared: not to be changed.)"""
        if type(event) is Change:  # most records; and a pydantic isinstance costs 0.3 µs
            if table is None:
                table = event.table
            wanted = self._by_op.get((table, event.op))
            if wanted is not None:
                return wanted
        elif isinstance(event, DomainEvent):
            return self.event_routes.get(event.type)
        if isinstance(event, TransactionEvent):
            # A BEGIN says nothing the END does not: only ENDs are taken.
            return self.transaction_routes if event.status == "END" else []
        if table is None:
            table = event.table
        routes = self.routes.get(table)
        if routes is None:
            return None
        if not isinstance(event, Change):
            return []
        op = event.op
        wanted = self._by_op.get((table, op))
        if wanted is None:
            wanted = [r for r in routes if r.wants(event)]
            if all(r.by_op(op) for r in routes):
                self._by_op[table, op] = wanted
        return wanted
