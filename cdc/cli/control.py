"""``cdc pause``, ``cdc resume``, ``cdc skip``, ``cdc controls``: operators' orders to every
running consumer, through the control topic."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cdc.cli.common import HandlersOpt, WatchedOpt, _consumer_setup, _watched, app, console
from cdc.errors import ConfigError

if TYPE_CHECKING:
    from cdc.routing import Handler
    from cdc.runtime.control import Order
    from cdc.settings import Settings
    from cdc.tables.config import WatchedTables

HandlerArg = Annotated[
    str | None,
    typer.Argument(
        help="The handler (module.function, or the function's name when only one has it). "
        "Without one, every handler of the workload."
    ),
]
WorkloadOpt = Annotated[
    str | None,
    typer.Option("--workload", "-w", help="The workload (default: the handler's, else `default`)."),
]
ReasonOpt = Annotated[
    str, typer.Option("--reason", "-r", help="Why: kept with the order and logged by consumers.")
]


def _target(
    tables: WatchedOpt, handlers: HandlersOpt, handler: str | None, workload: str | None
) -> tuple[Settings, WatchedTables, str, str | None]:
    """The settings, the file, and the workload and handler the order is for: a handler
    that no loaded module declares, or one outside the workload named, is refused."""
    from cdc.tables.workloads import DEFAULT_WORKLOAD

    if handler is None:
        settings, watched = _watched(tables)
        return settings, watched, workload or DEFAULT_WORKLOAD, None
    settings, watched, found = _consumer_setup(tables, handlers)
    match = _handler(found, handler)
    if workload is not None and match.workload != workload:
        raise ConfigError(
            f"handler {match.name}", [f"runs in workload {match.workload!r}, not {workload!r}"]
        )
    return settings, watched, match.workload, match.name


def _handler(found: list[Handler], name: str) -> Handler:
    exact = [h for h in found if h.name == name]
    named = exact or [h for h in found if h.name.rsplit(".", 1)[-1] == name]
    if len({h.name for h in named}) != 1:
        known = ", ".join(sorted({h.name for h in found}))
        why = "no such handler" if not named else "more than one handler has that name"
        raise ConfigError(f"handler {name!r}", [f"{why}; the handlers: {known}"])
    return named[0]


def _send(settings: Settings, watched: WatchedTables, key: str, order: Order | None) -> str:
    return _send_raw(settings, watched, key, order.encode() if order else None)


def _send_raw(settings: Settings, watched: WatchedTables, key: str, value: bytes | None) -> str:
    from cdc.runtime.control import control_topic, send_order

    topic = control_topic(watched.connector.topic_prefix)
    send_order(settings, topic, key, value)
    return topic


@app.command()
def pause(
    handler: HandlerArg = None,
    workload: WorkloadOpt = None,
    reason: ReasonOpt = "paused by an operator",
    tables: WatchedOpt = None,
    handlers: HandlersOpt = None,
) -> None:
    """Pause a handler, or a whole workload, on every running consumer within a second or
    two, and after restarts, until `cdc resume`. Its changes wait, their offsets not
    passed; the workload's other handlers go on until its in-flight window is full."""
    from cdc.runtime.control import new_order, pause_key

    settings, watched, lane, name = _target(tables, handlers, handler, workload)
    topic = _send(settings, watched, pause_key(lane, name), new_order(reason))
    what = name or f"every handler of workload {lane}"
    console.print(f"paused {what} ({topic})")


@app.command()
def resume(
    handler: HandlerArg = None,
    workload: WorkloadOpt = None,
    tables: WatchedOpt = None,
    handlers: HandlersOpt = None,
) -> None:
    """Withdraw a `cdc pause`: what waited runs, in order, then the rest."""
    from cdc.runtime.control import pause_key

    settings, watched, lane, name = _target(tables, handlers, handler, workload)
    topic = _send(settings, watched, pause_key(lane, name), None)
    console.print(f"resumed {name or f'workload {lane}'} ({topic})")


@app.command()
def skip(
    topic: Annotated[str, typer.Option(help="The record's topic.")],
    partition: Annotated[int, typer.Option(help="Its partition.")],
    offset: Annotated[int, typer.Option(help="Its offset.")],
    reason: ReasonOpt,
    handler: HandlerArg = None,
    workload: WorkloadOpt = None,
    tables: WatchedOpt = None,
    handlers: HandlersOpt = None,
) -> None:
    """Skip one record on purpose (a poison record, a change that must not be applied): it
    goes to the dead-letter topic with your reason, error `Skipped`, instead of running,
    also when it is being retried now. The key's later changes are not held behind it."""
    from cdc.runtime.control import new_order, skip_key

    settings, watched, lane, name = _target(tables, handlers, handler, workload)
    key = skip_key(lane, topic, partition, offset, name)
    control = _send(settings, watched, key, new_order(reason))
    console.print(f"{topic}[{partition}]@{offset} is skipped for {name or lane} ({control})")


@app.command()
def rewind(
    to: Annotated[
        str,
        typer.Option(
            help="Where to go back to: a time (ISO 8601, e.g. 2026-12-07T05:00:00Z; the first "
            "record at or after it, per partition) or an offset (on every partition)."
        ),
    ],
    reason: ReasonOpt,
    handler: HandlerArg = None,
    workload: WorkloadOpt = None,
    tables: WatchedOpt = None,
    handlers: HandlersOpt = None,
) -> None:
    """Re-run a workload, or one of its handlers, from a point in time or an offset, on
    every running consumer of it; other workloads keep their positions. A handler's rewind
    runs only that handler on the records it re-reads. Never moves a partition forward;
    carried out once per partition, also across restarts; the ledger keeps effects single."""
    import uuid

    from cdc.runtime.control import new_order
    from cdc.runtime.rewind import Rewind, parse_point, rewind_key

    to_ms, offset = parse_point(to)
    settings, watched, lane, name = _target(tables, handlers, handler, workload)
    order = new_order(reason)
    order_id = uuid.uuid4().hex[:12]
    value = Rewind(order_id, name or "*", to_ms, offset, order.reason, order.by, order.at)
    topic = _send_raw(settings, watched, rewind_key(lane, name), value.encode())
    console.print(f"rewinding {name or f'workload {lane}'} to {to} ({topic}, id {order_id})")


@app.command()
def controls(tables: WatchedOpt = None) -> None:
    """Show the orders in force: what is paused and which records are skipped, with why,
    by whom and when."""
    from cdc.runtime.control import control_topic, read_orders

    settings, watched = _watched(tables)
    topic = control_topic(watched.connector.topic_prefix)
    orders = read_orders(settings, topic, watched.limits, threading.Event())
    table = Table(title=f"{topic}: {len(orders)} order(s) in force", title_justify="left")
    for column in ("order", "workload", "for", "reason", "by", "at"):
        table.add_column(column, overflow="fold")
    for key, order in sorted(orders.items()):
        kind, workload, target = key.split("/", 2)
        if kind != "rewound":  # where a rewind was carried out: not an order
            table.add_row(kind, workload, target, order.reason, order.by, order.at)
    console.print(table)
