"""Recurring events, declared with ``@every`` on their handler or under ``schedules:`` in the
watched-tables file.

    @every("0 3 * * *", event="nightly-report")        # cron, UTC
    def report(event: DomainEvent[Fired], ctx: Context) -> None: ...

    @every("30s", event="sync-due")                    # an interval, from the Unix epoch

At each due time one `Fired` event goes through the outbox (aggregate type ``schedule``,
aggregate id the schedule's name), once across every running consumer. After downtime a
schedule fires once, for the latest due time it missed (``missed`` counts the slots passed
over), never once per missed slot."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from cdc.errors import ConfigError
from cdc.routing import on_event
from cdc.routing.declared import Handler
from cdc.schedule.spec import Spec, parse_spec
from cdc.tables.config import WatchedTables

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__cdc_every__"


class Fired(BaseModel):
    """The payload of a recurring event."""

    schedule: str
    due_at: datetime  # the due time this event stands for
    missed: int = 0  # earlier due times passed over while no consumer ran
    data: dict[str, Any] = {}


@dataclass(frozen=True)
class Schedule:
    name: str
    spec: Spec
    event: str
    aggregate_type: str = "schedule"
    data: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where it was declared, for errors

    def payload(self, due: datetime, missed: int) -> Fired:
        return Fired(schedule=self.name, due_at=due, missed=missed, data=self.data)


def every(
    when: str | timedelta,
    *,
    event: str,
    name: str | None = None,
    aggregate_type: str = "schedule",
    data: dict[str, Any] | None = None,
    ledger: bool = False,
) -> Callable[[F], F]:
    """Fire ``event`` at each due time of ``when`` (a cron expression in UTC, or an interval
    such as ``"30s"``, ``"5m"`` or a `timedelta`) and handle it with the decorated function,
    which gets a `DomainEvent` of `Fired`. ``name`` (default: the event type) keys the
    schedule's state: rename it and it starts afresh. ``data`` goes into every payload."""

    def mark(func: F) -> F:
        where = f"handler {func.__module__}.{func.__qualname__}"
        try:
            spec = parse_spec(when)
        except ValueError as exc:
            raise ConfigError(where, [str(exc)]) from exc
        schedule = Schedule(name or event, spec, event, aggregate_type, dict(data or {}), where)
        func = on_event(event, model=Fired, ledger=ledger)(func)
        setattr(func, _MARK, (*getattr(func, _MARK, ()), schedule))
        return func

    return mark


def declared(handlers: Iterable[Handler], watched: WatchedTables) -> list[Schedule]:
    """Every schedule of the handlers and the watched-tables file; ConfigError when two share
    a name, or when there is no outbox to fire into."""
    found: dict[str, Schedule] = {}
    seen: set[int] = set()
    for h in handlers:
        if id(h.func) in seen:
            continue
        seen.add(id(h.func))
        for s in getattr(h.func, _MARK, ()):
            _add(found, s)
    for key, opts in watched.schedules.items():
        spec = parse_spec(opts.every)  # checked when the file was read
        where = f"schedules.{key} in the watched-tables file"
        _add(found, Schedule(key, spec, opts.event, opts.aggregate_type, dict(opts.data), where))
    if found and watched.outbox is None:
        raise ConfigError(
            "schedules", ["recurring events go through the outbox: declare `outbox:`"]
        )
    return list(found.values())


def _add(found: dict[str, Schedule], schedule: Schedule) -> None:
    other = found.get(schedule.name)
    if other is not None and other != schedule:
        raise ConfigError(
            f"schedule {schedule.name!r}",
            [f"declared twice, differently: {other.source} and {schedule.source}"],
        )
    found[schedule.name] = schedule
