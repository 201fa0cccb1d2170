"""Run one handler on one change or domain event, as the consumer would, without Kafka."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cdc.errors import ConfigError
from cdc.events import Change, Changes, DomainEvent
from cdc.routing import Handler, Routable, Route, TableHandler, TransactionHandler, handlers_of
from cdc.runtime import Dispatcher, HandlerRun, Outcome, Resources
from cdc.settings import Settings
from cdc.tables.config import OutboxOptions, WatchedTables


class HandlerRunner:
    """Runs handlers with one set of resources (a connection pool to ``settings``' database),
    kept open between runs; close it when done."""

    def __init__(self, settings: Settings | None = None, watched: WatchedTables | None = None):
        self.watched = watched
        outbox = (watched.outbox if watched else None) or OutboxOptions()
        self.dispatcher = Dispatcher(Resources(settings or Settings(), outbox.table))

    def run(
        self, func: Callable[..., Any], change: Routable | Sequence[Change], attempt: int = 1
    ) -> HandlerRun:
        """One attempt of ``func``'s handler for the change's table (or the domain event's
        type), through the same filters, model and outcome rules as the consumer. Published
        records are returned in ``run.published``, not sent. A change the handler's filters do
        not want is ``Outcome.SKIPPED``. A batch handler takes a list of changes (those its
        filters do not want left out, as the consumer does), a transaction handler a
        `cdc.Changes` (``Changes(changes, transaction_id)``)."""
        if not isinstance(change, Change | DomainEvent):
            changes = change if isinstance(change, Changes) else Changes(change)
            return self._run_list(func, changes, attempt)
        subject = change.table if isinstance(change, Change) else f"event {change.type!r}"
        route = self._route(func, subject)
        if not route.wants(change):
            return HandlerRun(route.name, Outcome.SKIPPED, attempts=0)
        return self.dispatcher.attempt(route, change, attempt, publish=False)

    def _run_list(self, func: Callable[..., Any], changes: Changes, attempt: int) -> HandlerRun:
        if not changes:
            raise ConfigError("run", ["a batch handler is run on one change or more"])
        route = self._route(func, changes[0].table)
        wanted = changes.part(c for c in changes if route.wants(c))
        if not wanted:
            return HandlerRun(route.name, Outcome.SKIPPED, attempts=0)
        return self.dispatcher.attempt(route, wanted, attempt, publish=False)

    def _route(self, func: Callable[..., Any], subject: str) -> Route:
        """The route of ``func``'s handler for ``subject``."""
        declared = [h for h in handlers_of(func) if subject in _subjects(h)]
        if not declared:
            handles = [
                s for h in handlers_of(func) for s in _subjects(h)
            ] or "nothing (not decorated)"
            raise ConfigError(
                f"handler {getattr(func, '__qualname__', func)!r}",
                [f"handles {handles}, not {subject}"],
            )
        return Route.of(declared[0], self.watched.tables if self.watched else {})

    def close(self) -> None:
        self.dispatcher.close()
        self.dispatcher.resources.close()

    def __enter__(self) -> HandlerRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _subjects(handler: Handler) -> set[str]:
    if isinstance(handler, TableHandler):
        return {handler.table}
    if isinstance(handler, TransactionHandler):
        return set(handler.tables)
    return {f"event {handler.event_type!r}"}


def run_handler(
    func: Callable[..., Any],
    change: Routable | Sequence[Change],
    settings: Settings | None = None,
    watched: WatchedTables | None = None,
) -> HandlerRun:
    """``HandlerRunner(settings, watched).run(func, change)``, closed afterwards."""
    with HandlerRunner(settings, watched) as runner:
        return runner.run(func, change)
