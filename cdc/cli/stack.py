"""``cdc stack``: the local real stack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cdc.settings import stack_dir

if TYPE_CHECKING:
    pass

from cdc.cli.common import (
    _local_stack,
    app,
    console,
)

stack_app = typer.Typer(no_args_is_help=True, help="The local real stack (no Docker).")
app.add_typer(stack_app, name="stack")


@stack_app.command("fetch")
def stack_fetch() -> None:
    """Fetch the pinned JVM artifacts (Kafka, Connect, Debezium, Apicurio) with Maven."""
    from cdc.stack.jvm import jvm_home

    console.print(f"JVM artifacts in {jvm_home()}")


@stack_app.command("up")
def stack_up(
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every component to be ready.")
    ] = 300.0,
    brokers: Annotated[
        int | None,
        typer.Option(
            envvar="CDC_STACK_BROKERS",
            help="Kafka nodes: 1, or a KRaft cluster of 3 or more (default: as the stack was "
            "made, else 1).",
        ),
    ] = None,
    connect_workers: Annotated[
        int | None,
        typer.Option(
            envvar="CDC_STACK_CONNECT_WORKERS",
            help="Kafka Connect workers in one group (default: as the stack was made, else 1).",
        ),
    ] = None,
    exactly_once: Annotated[
        bool | None,
        typer.Option(
            "--exactly-once/--no-exactly-once",
            envvar="CDC_STACK_EXACTLY_ONCE",
            help="Give the Connect workers exactly-once source support, for a connector with "
            "exactly_once: true in cdc.yaml (default: as the stack was made, else off).",
        ),
    ] = None,
) -> None:
    """Start PostgreSQL, Kafka, Kafka Connect and Apicurio; wait until each is ready."""
    endpoints = _local_stack().up(
        timeout=timeout,
        brokers=brokers,
        connect_workers=connect_workers,
        exactly_once=exactly_once,
    )
    console.print(f"stack ready in {stack_dir()}")
    for key, value in endpoints.env().items():
        if "PASSWORD" not in key:
            console.print(f"  {key}={value}")


@stack_app.command("down")
def stack_down(
    destroy: Annotated[bool, typer.Option(help="Also delete the state directory.")] = False,
) -> None:
    """Stop every component of the local stack."""
    stack = _local_stack()
    stack.destroy() if destroy else stack.down()
    console.print("stack stopped")


@stack_app.command("status")
def stack_status() -> None:
    """Show each component: pid, port, readiness, log file."""
    status = _local_stack().status()
    table = Table("component", "pid", "port", "ready", "log")
    for name, s in status.items():
        table.add_row(
            name,
            str(s["pid"] or "-"),
            str(s["port"] or "-"),
            "yes" if s["ready"] else "no",
            str(s["log"]),
        )
    console.print(table)
    if not all(s["ready"] for s in status.values()):
        raise typer.Exit(1)
