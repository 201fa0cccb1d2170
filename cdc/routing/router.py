"""Which handlers an event goes to: the routing table built from the handlers and the
watched-tables file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cdc.events import Change, Delivery, DeliveryGate, Event, Op
from cdc.routing.handlers import TableHandler
from cdc.tables.config import TableOptions


@dataclass(frozen=True)
class Route:
    """A handler with its snapshot policy resolved against the table's options."""

    handler: TableHandler
    snapshot_reads: bool

    @classmethod
    def of(cls, handler: TableHandler, tables: Mapping[str, TableOptions]) -> Route:
        """The handler's own snapshot choice, else its table's option in the file."""
        chosen = handler.snapshot_reads
        if chosen is None:
            chosen = tables.get(handler.table, TableOptions()).snapshot_reads
        return cls(handler, chosen)

    @property
    def name(self) -> str:
        return self.handler.name

    def wants(self, change: Change) -> bool:
        return self.handler.wants(change, self.snapshot_reads)


class Router:
    """Routes per table, and the delivery gate they imply: a table's snapshot reads or
    truncates are let through only when one of its handlers takes them."""

    def __init__(
        self, handlers: Iterable[TableHandler], tables: Mapping[str, TableOptions] | None = None
    ) -> None:
        tables = tables or {}
        self.routes: dict[str, list[Route]] = {}
        for handler in handlers:
            self.routes.setdefault(handler.table, []).append(Route.of(handler, tables))
        self.gate = DeliveryGate(
            {
                table: Delivery(
                    snapshot_reads=any(r.snapshot_reads for r in routes),
                    truncates=any(Op.TRUNCATE in r.handler.ops for r in routes),
                )
                for table, routes in self.routes.items()
            }
        )

    @property
    def handlers(self) -> list[TableHandler]:
        return [r.handler for routes in self.routes.values() for r in routes]

    def tables(self) -> list[str]:
        return list(self.routes)

    def routes_for(self, event: Event) -> list[Route] | None:
        """The routes that want this event; None when no handler exists for its table."""
        routes = self.routes.get(event.table)
        if routes is None:
            return None
        if not isinstance(event, Change):
            return []
        return [r for r in routes if r.wants(event)]
