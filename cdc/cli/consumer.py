"""``cdc check``, ``models``, ``run``, ``lag``, ``snapshot`` and ``settings``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cdc.errors import ConfigError
from cdc.settings import load_settings

if TYPE_CHECKING:
    from cdc.routing import Handler
    from cdc.runtime.workloads import Workload
    from cdc.settings import Settings
    from cdc.tables.config import WatchedTables

from cdc.cli.common import (
    HandlersOpt,
    WatchedOpt,
    _consumer_setup,
    _report,
    _watched,
    app,
    console,
)


@app.command("check")
def check(
    tables: WatchedOpt = None,
    handlers: HandlersOpt = None,
    strict: Annotated[bool, typer.Option(help="Fail on warnings too.")] = False,
) -> None:
    """Compare the handlers, the watched-tables file, the live connector, the publication and
    each table's replica identity; print every mismatch with its fix."""
    from cdc.check import run_check

    settings, watched, found = _consumer_setup(tables, handlers)
    report = run_check(found, watched, settings)
    _report(report, console)
    if report.errors or (strict and report.warnings):
        raise typer.Exit(1)


@app.command("models")
def models(
    tables: WatchedOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the module here, not to stdout.")
    ] = None,
) -> None:
    """Print one cdc.Row class per watched table, from PostgreSQL's catalog: each column's
    Python type, nullability, timestamp unit, and where UNAVAILABLE or Unrepresentable may
    arrive."""
    from cdc.connect import connect_database
    from cdc.tables.models import render, table_models

    settings, watched = _watched(tables)
    with connect_database(settings, timeout=10) as conn:
        found, missing = table_models(conn, watched)
    if missing:
        raise ConfigError(
            str(settings.watched_tables), [f"no table {name} in the database" for name in missing]
        )
    text = render(found, str(settings.watched_tables), watched.connector.encoding)
    if out is None:
        print(text, end="")
    else:
        out.write_text(text)
        console.print(f"{len(found)} model(s) written to {out}")


def _summary(
    settings: Settings, watched: WatchedTables, plans: list[tuple[Workload, list[Handler]]]
) -> Table:
    """What `cdc run` is about to run, in one screen: per workload its group, tables, events
    and handlers (each once), and where its metrics and probes are served."""
    from cdc.routing import Router

    port = settings.http_port
    where = (
        f"metrics and probes on http://{settings.http_host}:{port} (/metrics, /readyz)"
        if port
        else "no metrics endpoint"
    )
    table = Table(
        title=f"cdc run: encoding {watched.connector.encoding.value}, {where}",
        title_justify="left",
        box=None,
        padding=(0, 2, 0, 0),
    )
    for column in ("workload", "group", "concurrency", "tables and events", "handlers"):
        table.add_column(column, overflow="fold")
    for lane, found in plans:
        router = Router(found, watched.tables)
        names = list(dict.fromkeys(h.name for h in found))
        table.add_row(
            lane.name,
            lane.settings.group_id,
            str(lane.settings.concurrency),
            "\n".join([*router.tables(), *router.event_types()]),
            "\n".join(names),
        )
    return table


@app.command("run")
def run(
    tables: WatchedOpt = None,
    handlers: HandlersOpt = None,
    group: Annotated[str | None, typer.Option(help="Consumer group id ($CDC_GROUP_ID).")] = None,
    check: Annotated[
        bool, typer.Option(help="Run `cdc check` first and refuse to start on an error.")
    ] = True,
    workload: Annotated[
        list[str] | None,
        typer.Option(
            "--workload",
            "-w",
            help="Run only this workload's handlers (repeat for several); default: every "
            "workload, each in its own consumer group.",
        ),
    ] = None,
    with_console: Annotated[
        bool,
        typer.Option(
            "--console",
            help="Serve the web console beside the consumer too (`cdc console`: its token "
            "and where it listens).",
        ),
    ] = False,
) -> None:
    """Consume the watched tables' topics and run the handlers on each change."""
    import signal

    from cdc.runtime.workloads import Workloads, plan

    settings, watched, found = _consumer_setup(tables, handlers, group)
    plans = plan(settings, watched, found, workload or ())
    served = None
    if with_console:  # refused before anything runs if it cannot be served (no token)
        from cdc.cli.console import console_server

        served = console_server()(settings, watched, found)
    if check and settings.check_at_start:
        from cdc.capture_health import CaptureProblem
        from cdc.check import run_check

        report = run_check(found, watched, settings)
        err = Console(stderr=True)
        _report(report, err)
        # A stopped connector is no reason not to consume what it captured before: the
        # consumer goes on saying so (log, metric, /readyz) until it runs again.
        if any(not isinstance(f, CaptureProblem) for f in report.errors):
            err.print("refusing to start: fix the errors above (or run with --no-check)")
            raise typer.Exit(2)
    from cdc.schedule import start_scheduler
    from cdc.schedule.scheduler import CountsCollector

    workloads = Workloads(settings, watched, plans)
    err = Console(stderr=True)
    if err.is_terminal:  # for a person; logs collected elsewhere say it in consumer.started
        err.print(_summary(settings, watched, plans))
    # Delayed and recurring events: one process of all running does the work (cdc.schedule).
    scheduler = start_scheduler(settings, watched, found)
    workloads.registry.register(CountsCollector(scheduler.counts))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: workloads.stop())
    if served is not None:
        served.start()
    try:
        workloads.run()
    finally:
        scheduler.stop()
        if served is not None:
            served.stop()


@app.command("lag")
def lag(
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Consumer group (default: $CDC_GROUP_ID).")
    ] = None,
    tables: WatchedOpt = None,
    workload: Annotated[
        list[str] | None,
        typer.Option(
            "--workload",
            "-w",
            help="This workload's group (repeat for several); default: every workload's.",
        ),
    ] = None,
) -> None:
    """Show how far a consumer group is behind on each watched table's topic: committed
    offset, end offset and lag per partition, totals per table and overall. Each workload
    has a group of its own: one table each (a workload other than `default` shows the
    topics it has committed on)."""
    from cdc.lag import group_lag, lag_table, workload_lag
    from cdc.slot_health import slot_line
    from cdc.tables.workloads import DEFAULT_WORKLOAD

    settings, watched = _watched(tables)
    prefix = watched.connector.topic_prefix
    if group:
        title = f"consumer group {group} on {prefix}.<schema>.<table>"
        console.print(lag_table(group_lag(settings, watched, group), title=title))
    for name in [] if group else workload or [DEFAULT_WORKLOAD, *watched.workloads]:
        group_id, rows = workload_lag(settings, watched, name)
        title = f"workload {name}: consumer group {group_id} on {prefix}.<schema>.<table>"
        console.print(lag_table(rows, title=title))
    console.print(slot_line(settings, watched.connector.slot), soft_wrap=True)


@app.command("snapshot")
def snapshot(
    names: Annotated[
        list[str], typer.Argument(metavar="TABLE...", help="schema.table, or table in public.")
    ],
    tables: WatchedOpt = None,
) -> None:
    """Backfill watched tables: ask the connector for an incremental snapshot, which sends
    each of their rows as a read event (op r) while streaming goes on."""
    from cdc.connect import request_snapshot, watched_names

    settings, watched = _watched(tables)
    chosen = watched_names(watched, names, str(settings.watched_tables))
    signal_id = request_snapshot(watched, settings, chosen)
    # One line, however narrow the terminal: scripts pick the signal id out of it.
    console.print(
        f"incremental snapshot of {', '.join(chosen)} requested: signal {signal_id}",
        soft_wrap=True,
    )


@app.command("settings")
def show_settings() -> None:
    """Show the effective settings (environment, env file, secrets dir, local stack) with
    secrets masked."""
    table = Table(caption="each is set as CDC_<SETTING> in the environment or an env file")
    table.add_column("setting", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in load_settings().masked().items():
        shown = json.dumps(value) if isinstance(value, dict) else "" if value is None else value
        table.add_row(name, str(shown))
    console.print(table)
