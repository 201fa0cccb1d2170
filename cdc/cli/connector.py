"""``cdc connector``: the Debezium connector."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cdc.deploy import Target
from cdc.errors import ConnectError

if TYPE_CHECKING:
    from cdc.tables.config import WatchedTables

from cdc.cli.common import (
    RenderFormat,
    WatchedOpt,
    _watched,
    app,
    console,
)

connector_app = typer.Typer(no_args_is_help=True, help="The Debezium connector.")
app.add_typer(connector_app, name="connector")


@connector_app.command("render")
def connector_render(
    tables: WatchedOpt = None,
    fmt: Annotated[
        RenderFormat,
        typer.Option(
            "--format",
            help="json: the config `cdc connector apply` puts; strimzi: a KafkaConnector.",
        ),
    ] = RenderFormat.JSON,
    connect_cluster: Annotated[
        str, typer.Option(help="The Strimzi KafkaConnect the connector runs in.")
    ] = Target.connect_cluster,
) -> None:
    """Print the connector config derived from the watched-tables file (secrets masked)."""
    from cdc.connect import render_config

    settings, watched = _watched(tables)
    if fmt is RenderFormat.STRIMZI:
        from cdc.deploy.kubernetes import kafka_connector
        from cdc.deploy.yaml_out import dump

        print(dump(kafka_connector(watched, settings, connect_cluster)), end="")
        return
    console.print_json(json.dumps(render_config(watched, settings, masked=True)))


@connector_app.command("apply")
def connector_apply(tables: WatchedOpt = None) -> None:
    """Apply the SQL and the connector config idempotently."""
    from cdc.connect import apply_connector

    settings, watched = _watched(tables)
    result = apply_connector(watched, settings)
    console.print(f"connector {watched.connector.name}: {result}")


def _print_status(status: dict[str, Any], watched: WatchedTables, file: str) -> None:
    """Print a connector's status as a table: one row for it, one for each task; then what
    to do about each that captures nothing."""
    from cdc.capture_health import instance_problems
    from cdc.connect import status_rows

    rows = status_rows(status)
    table = Table("", "state", "worker", "trace", title=f"connector {status.get('name', '')}")
    for row in rows:
        style = {"RUNNING": "green", "FAILED": "bold red"}.get(row.state, "yellow")
        # Text, not markup: a Java trace may hold square brackets.
        table.add_row(row.instance, Text(row.state, style), Text(row.worker), Text(row.trace))
    console.print(table)
    for problem in instance_problems(watched, status, file):
        console.print(problem.one_line(), markup=False, highlight=False, soft_wrap=True)


@connector_app.command("status")
def connector_status(
    tables: WatchedOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print Connect's status JSON.")] = False,
) -> None:
    """Show the connector's and its tasks' state, and what to do about a stopped one (exit 1
    unless all are RUNNING)."""
    from cdc.connect import ConnectClient, status_rows

    settings, watched = _watched(tables)
    status = ConnectClient(settings.connect_url).status(watched.connector.name)
    if as_json:
        console.print_json(json.dumps(status))
    else:
        _print_status(status, watched, str(tables or settings.watched_tables))
    rows = status_rows(status)
    # A connector without tasks streams nothing: that is not running either.
    if len(rows) < 2 or any(row.state != "RUNNING" for row in rows):
        raise typer.Exit(1)


@connector_app.command("recover")
def connector_recover(tables: WatchedOpt = None) -> None:
    """After the replication slot was lost or dropped: let the connector make a new one and
    re-read every watched table as snapshot reads (op r). Does nothing to a healthy slot."""
    from cdc.slot_recovery import recover_slot

    settings, watched = _watched(tables)
    done = recover_slot(watched, settings)
    slot = watched.connector.slot
    if not done.needed:
        console.print(f"replication slot {slot} is healthy: nothing to recover")
        return
    was = "lost, dropped and made again" if done.dropped else "missing, made again"
    console.print(
        f"replication slot {slot} was {was}; {done.signal} re-reads "
        f"{sum(done.rows.values())} row(s): " + ", ".join(f"{t} {n}" for t, n in done.rows.items()),
        soft_wrap=True,
    )


@connector_app.command("restart")
def connector_restart(
    tables: WatchedOpt = None,
    failed_only: Annotated[
        bool,
        typer.Option(
            "--failed-only/--all",
            help="Restart only the FAILED connector or tasks, or all of them.",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for RUNNING.")] = 60.0,
    steady: Annotated[
        float,
        typer.Option(help="Seconds they must then stay RUNNING (a task can fail again)."),
    ] = 5.0,
) -> None:
    """Restart the connector and its tasks, wait until they are RUNNING and stay so, show the
    status."""
    from cdc.connect import ConnectClient

    settings, watched = _watched(tables)
    client = ConnectClient(settings.connect_url)
    file = str(tables or settings.watched_tables)
    try:
        restarted, status = client.restart_and_wait(
            watched.connector.name, failed_only, timeout, steady=steady
        )
    except ConnectError:
        console.print("restarted, but it did not stay RUNNING:")
        _print_status(client.status(watched.connector.name), watched, file)
        raise typer.Exit(1) from None
    console.print(f"restarted: {', '.join(restarted) or 'nothing (none FAILED)'}")
    _print_status(status, watched, file)
