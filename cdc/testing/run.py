"""Run one handler on one change, as the consumer would, without Kafka."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cdc.errors import ConfigError
from cdc.events import Change
from cdc.routing import Route, handlers_of
from cdc.runtime import Dispatcher, HandlerRun, Outcome, Resources
from cdc.settings import Settings
from cdc.tables.config import WatchedTables


class HandlerRunner:
    """Runs handlers with one set of resources (a connection pool to ``settings``' database),
    kept open between runs; close it when done."""

    def __init__(self, settings: Settings | None = None, watched: WatchedTables | None = None):
        self.watched = watched
        self.dispatcher = Dispatcher(Resources(settings or Settings()))

    def run(self, func: Callable[..., Any], change: Change, attempt: int = 1) -> HandlerRun:
        """One attempt of ``func``'s handler for the change's table, through the same filters,
        row model and outcome rules as the consumer. Published records are returned in
        ``run.published``, not sent. A change the handler's filters do not want is
        ``Outcome.SKIPPED``."""
        declared = [h for h in handlers_of(func) if h.table == change.table]
        if not declared:
            tables = [h.table for h in handlers_of(func)] or "no table (not decorated)"
            raise ConfigError(
                f"handler {getattr(func, '__qualname__', func)!r}",
                [f"handles {tables}, not {change.table!r}"],
            )
        route = Route.of(declared[0], self.watched.tables if self.watched else {})
        if not route.wants(change):
            return HandlerRun(route.name, Outcome.SKIPPED, attempts=0)
        return self.dispatcher.attempt(route, change, attempt, publish=False)

    def close(self) -> None:
        self.dispatcher.close()
        self.dispatcher.resources.close()

    def __enter__(self) -> HandlerRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_handler(
    func: Callable[..., Any],
    change: Change,
    settings: Settings | None = None,
    watched: WatchedTables | None = None,
) -> HandlerRun:
    """``HandlerRunner(settings, watched).run(func, change)``, closed afterwards."""
    with HandlerRunner(settings, watched) as runner:
        return runner.run(func, change)
