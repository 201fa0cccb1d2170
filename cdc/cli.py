"""The ``cdc`` command."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cdc.deploy import Target
from cdc.errors import CdcError, ConfigError, ConnectError
from cdc.logs import configure_logging
from cdc.settings import Settings, load_settings, stack_dir

if TYPE_CHECKING:
    from cdc.check import Report
    from cdc.routing import Handler
    from cdc.stack.local import LocalStack
    from cdc.tables.config import WatchedTables

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="React to PostgreSQL changes captured by Debezium.",
)
stack_app = typer.Typer(no_args_is_help=True, help="The local real stack (no Docker).")
connector_app = typer.Typer(no_args_is_help=True, help="The Debezium connector.")
app.add_typer(stack_app, name="stack")
app.add_typer(connector_app, name="connector")
console = Console()


class RenderFormat(StrEnum):
    JSON = "json"
    STRIMZI = "strimzi"


WatchedOpt = Annotated[
    Path | None,
    typer.Option(
        "--tables", "-t", help="Watched-tables file (default: $CDC_WATCHED_TABLES or cdc.yaml)."
    ),
]


@app.callback()
def _setup(log_level: Annotated[str, typer.Option(envvar="CDC_LOG_LEVEL")] = "INFO") -> None:
    configure_logging(log_level)


def _local_stack() -> LocalStack:
    from cdc.stack.local import LocalStack

    return LocalStack(stack_dir())


@stack_app.command("fetch")
def stack_fetch() -> None:
    """Fetch the pinned JVM artifacts (Kafka, Connect, Debezium, Apicurio) with Maven."""
    from cdc.stack.jvm import jvm_home

    console.print(f"JVM artifacts in {jvm_home()}")


@stack_app.command("up")
def stack_up(
    timeout: float = 300.0,
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
) -> None:
    """Start PostgreSQL, Kafka, Kafka Connect and Apicurio; wait until each is ready."""
    endpoints = _local_stack().up(timeout=timeout, brokers=brokers, connect_workers=connect_workers)
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


def _watched(
    tables: Path | None, settings: Settings | None = None, **given: object
) -> tuple[Settings, WatchedTables]:
    """The settings with the options given (None: not given; ``--tables`` is ``watched_tables``)
    and the file they name: the one place that decides the file, which all else names from
    ``settings.watched_tables``."""
    from cdc.tables.config import load_watched_tables

    given = {"watched_tables": tables, **given}
    settings = (settings or load_settings()).model_copy(
        update={k: v for k, v in given.items() if v is not None}
    )
    return settings, load_watched_tables(settings.watched_tables)


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


db_app = typer.Typer(no_args_is_help=True, help="The application database.")
app.add_typer(db_app, name="db")


@db_app.command("init")
def db_init(
    schema: Annotated[
        list[Path] | None, typer.Option(help="SQL file(s) to run as the application role.")
    ] = None,
) -> None:
    """Create the application and Debezium roles and database (when a superuser password is
    set), then run the given schema files as the application role."""
    import psycopg

    from cdc.stack.config import DatabaseRoles, bootstrap_postgres
    from cdc.stack.probes import connect_superuser

    settings = load_settings()
    if settings.pg_superuser_password is not None:
        with connect_superuser(
            settings.pg_host,
            settings.pg_port,
            settings.pg_superuser_password.get_secret_value(),
            user=settings.pg_superuser,
        ) as conn:
            roles = DatabaseRoles(
                app_password=settings.pg_password.get_secret_value(),
                debezium_password=settings.debezium_password.get_secret_value(),
                database=settings.pg_database,
                app_user=settings.pg_user,
                debezium_user=settings.debezium_user,
            )
            bootstrap_postgres(conn, roles)
        console.print("roles and database ready")
    for path in schema or []:
        with psycopg.connect(
            settings.pg_conninfo(), password=settings.pg_password.get_secret_value()
        ) as conn:
            conn.execute(path.read_text().encode())
        console.print(f"applied {path}")


@db_app.command("prepare")
def db_prepare(tables: WatchedOpt = None) -> None:
    """Create what the connector needs in the database (tables, replica identity, grants,
    publication) without Kafka Connect: where Strimzi applies the connector. Idempotent."""
    from cdc.connect import prepare_database

    settings, watched = _watched(tables)
    prepare_database(watched, settings)
    console.print(f"database ready for connector {watched.connector.name}")


deploy_app = typer.Typer(
    no_args_is_help=True,
    help="Print what runs the pipeline elsewhere (from CDC_* settings in the environment).",
)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("compose")
def deploy_compose() -> None:
    """docker-compose.yml: the local stack's components and pins, the setup and the consumer."""
    from cdc.deploy.compose import render_compose

    print(render_compose(Settings()), end="")


@deploy_app.command("alerts")
def deploy_alerts() -> None:
    """Prometheus alerting rules for the consumer's metrics (deploy/prometheus/alerts.yml)."""
    from cdc.deploy.alerts import render_alerts

    print(render_alerts(), end="")


@deploy_app.command("kubernetes")
def deploy_kubernetes(
    tables: WatchedOpt = None,
    image: Annotated[str, typer.Option(help="The consumer image.")] = Target.image,
    name: Annotated[str, typer.Option(help="Name of the Deployment.")] = Target.name,
    namespace: Annotated[str | None, typer.Option(help="Namespace of every resource.")] = None,
    replicas: Annotated[int, typer.Option(min=1)] = Target.replicas,
    kafka_bootstrap: Annotated[str, typer.Option()] = Target.kafka_bootstrap,
    connect_cluster: Annotated[
        str, typer.Option(help="Name of the Strimzi KafkaConnect.")
    ] = Target.connect_cluster,
    connect_image: Annotated[
        str, typer.Option(help="Where Strimzi pushes the Connect image it builds.")
    ] = Target.connect_image,
    pg_host: Annotated[str, typer.Option(help="PostgreSQL as the pods reach it.")] = (
        Target.pg_host
    ),
    registry_url: Annotated[str, typer.Option()] = Target.registry_url,
    transforms_url: Annotated[
        str,
        typer.Option(
            help="Where Kafka Connect downloads cdc-transforms.jar (Avro only; built by "
            "`cdc stack fetch`, not published)."
        ),
    ] = Target.transforms_url,
) -> None:
    """The consumer's ConfigMaps, Deployment, metrics Service and PodDisruptionBudget, and
    Strimzi's KafkaConnect and KafkaConnector, as one multi-document YAML."""
    from cdc.deploy.kubernetes import render_kubernetes

    settings, watched = _watched(tables, Settings())
    target = Target(
        image=image,
        name=name,
        namespace=namespace,
        replicas=replicas,
        kafka_bootstrap=kafka_bootstrap,
        connect_cluster=connect_cluster,
        connect_image=connect_image,
        pg_host=pg_host,
        registry_url=registry_url,
        transforms_url=transforms_url,
    )
    text = settings.watched_tables.read_text()
    print(render_kubernetes(text, watched, settings, target), end="")


HandlersOpt = Annotated[
    str | None,
    typer.Option(
        "--handlers",
        help="Handler module(s) or package(s), comma-separated (default: $CDC_HANDLERS).",
    ),
]


def _consumer_setup(
    tables: Path | None, handlers: str | None, group: str | None = None
) -> tuple[Settings, WatchedTables, list[Handler]]:
    from cdc.routing import discover

    # Like `python -m`: the handlers live in the project the command runs in.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    settings, watched = _watched(tables, handlers=handlers, group_id=group)
    found = discover(settings.handler_modules())
    if not found:
        raise ConfigError(
            f"handlers {settings.handlers!r}", ["no @on_change or @on_event handler found"]
        )
    return settings, watched, found


def _report(report: Report, out: Console) -> None:
    for line in report.lines():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    summary = f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
    out.print(
        summary if report.findings else "no drift: handlers, file, connector and database agree"
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


@app.command("run")
def run(
    tables: WatchedOpt = None,
    handlers: HandlersOpt = None,
    group: Annotated[str | None, typer.Option(help="Consumer group id ($CDC_GROUP_ID).")] = None,
    check: Annotated[
        bool, typer.Option(help="Run `cdc check` first and refuse to start on an error.")
    ] = True,
) -> None:
    """Consume the watched tables' topics and run the handlers on each change."""
    import signal

    from cdc.routing import Router
    from cdc.runtime import Runtime

    settings, watched, found = _consumer_setup(tables, handlers, group)
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
    runtime = Runtime(settings, watched, Router(found, watched.tables))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runtime.stop())
    runtime.run()


@app.command("lag")
def lag(
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Consumer group (default: $CDC_GROUP_ID).")
    ] = None,
    tables: WatchedOpt = None,
) -> None:
    """Show how far a consumer group is behind on each watched table's topic: committed
    offset, end offset and lag per partition, totals per table and overall."""
    from cdc.lag import group_lag, lag_table
    from cdc.slot_health import slot_line

    settings, watched = _watched(tables)
    group = group or settings.group_id
    rows = group_lag(settings, watched, group)
    title = f"consumer group {group} on {watched.connector.topic_prefix}.<schema>.<table>"
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


dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter topic.")
app.add_typer(dlq_app, name="dlq")


def _dead_letter_topic(settings: Settings, watched: WatchedTables) -> str:
    return settings.dead_letter_topic or f"{watched.connector.topic_prefix}.dlq"


@dlq_app.command("list")
def dlq_list(
    tables: WatchedOpt = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (the latest).")] = 50,
) -> None:
    """Show the parked records: where each came from, which handler failed, why, and
    whether a replay has taken it already."""
    from cdc.runtime.replay import DeadLetterTopic, replay_group

    settings, watched = _watched(tables)
    topic = _dead_letter_topic(settings, watched)
    with DeadLetterTopic(settings, topic, limits=watched.limits) as dlq:
        done = dlq.replayed_up_to(replay_group(settings))
        parked = list(dlq)
    table = Table(title=f"{topic}: {len(parked)} record(s)", title_justify="left")
    for column in (
        "at",
        "parked",
        "from",
        "table",
        "handler",
        "error",
        "tries",
        "reason",
        "replayed",
    ):
        table.add_column(column, overflow="fold")
    for p in parked[-limit:]:
        table.add_row(
            f"{p.partition}@{p.offset}",
            p.parked_at.strftime("%Y-%m-%d %H:%M:%S") if p.parked_at else "",
            f"{p.topic}[{p.source_partition}]@{p.source_offset}",
            p.table,
            p.handler,
            p.error,
            str(p.attempts),
            p.reason[:200],
            "yes" if p.offset < done.get(p.partition, 0) else "no",
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(tables: WatchedOpt = None, handlers: HandlersOpt = None) -> None:
    """Send each parked record not yet replayed back through the handler that failed it.
    One that fails again is parked again (at the end of the topic) for a later replay."""
    from rich.progress import Progress

    from cdc.routing import Router
    from cdc.runtime import Runtime
    from cdc.runtime.replay import DeadLetterTopic, replay, replay_group

    settings, watched, found = _consumer_setup(tables, handlers)
    settings = settings.model_copy(update={"http_port": None})  # no probes for a one-off
    runtime = Runtime(settings, watched, Router(found, watched.tables))
    topic = _dead_letter_topic(settings, watched)
    try:
        with (
            DeadLetterTopic(settings, topic, replay_group(settings), watched.limits) as dlq,
            Progress(console=console) as progress,
        ):
            task = progress.add_task(f"replaying {topic}", total=dlq.pending)
            outcomes = replay(runtime, dlq, lambda *_: progress.advance(task))
    finally:
        runtime.close()
    summary = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "nothing to replay"
    console.print(f"replayed {sum(outcomes.values())} record(s): {summary}")
    if outcomes["parked_again"] or outcomes["no_handler"]:
        raise typer.Exit(1)


def main() -> None:
    import httpx
    import psycopg
    from confluent_kafka import KafkaError, KafkaException

    err = Console(stderr=True)
    try:
        app()
    except CdcError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except psycopg.Error as exc:
        err.print(f"[bold red]error:[/] PostgreSQL: {exc}", highlight=False)
        sys.exit(2)
    except httpx.HTTPError as exc:
        err.print(f"[bold red]error:[/] {exc.request.url}: {exc}", highlight=False)
        sys.exit(2)
    except KafkaException as exc:
        reason = exc.args[0].str() if isinstance(exc.args[0], KafkaError) else exc.args[0]
        err.print(f"[bold red]error:[/] Kafka: {reason}", highlight=False)
        sys.exit(2)
