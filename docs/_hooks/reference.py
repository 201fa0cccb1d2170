"""The reference tables, made from the code when the site is built.

A page asks for one with a line ``<!-- reference: NAME -->``, NAME one of ``GENERATORS``:
the settings from `cdc.settings.Settings`, the keys of ``cdc.yaml`` from
`cdc.tables.config.WatchedTables`, every command of the ``cdc`` Typer app, every metric the
consumer serves, and the public API (``::: name`` lines that mkdocstrings renders from the
docstrings). A setting or ``cdc.yaml`` key without a description here fails the build, as
does a description of one that no longer exists: the reference cannot go stale."""

from __future__ import annotations

import ast
import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

MARKER = re.compile(r"^<!-- reference: ([a-z-]+) -->$", re.MULTILINE)


class StaleReference(Exception):
    """The code and the descriptions below disagree."""


# What each setting means (the name, type, default and bounds come from the model).
SETTINGS = {
    "watched_tables": "The watched-tables file.",
    "kafka_bootstrap": "Kafka's bootstrap servers, comma-separated.",
    "kafka_security_protocol": "How every Kafka client of ours connects.",
    "kafka_sasl_mechanism": "The SASL mechanism, with the two credentials below.",
    "kafka_sasl_username": "The SASL user.",
    "kafka_sasl_password": "The SASL password.",
    "kafka_ssl_ca_location": "The CA certificate (PEM) the broker's certificate is checked "
    "against.",
    "kafka_ssl_certificate_location": "Our client certificate, for TLS client authentication.",
    "kafka_ssl_key_location": "The client certificate's private key.",
    "kafka_ssl_key_password": "The private key's password.",
    "kafka_ssl_endpoint_identification": "Whether the broker's host name is verified against "
    "its certificate.",
    "kafka_extra": 'Any other librdkafka property, as JSON: `{"client.rack": "eu-1a"}`. Its '
    "values are masked where their key names a secret.",
    "connect_url": "Kafka Connect's REST API. It may name several workers of one Connect "
    "group, comma separated: the next is asked while one cannot be reached. Empty means Kafka "
    "Connect is managed elsewhere (Strimzi): `cdc check` then leaves the connector out.",
    "registry_url": "The schema registry (Apicurio), for Avro.",
    "pg_host": "The application's database.",
    "pg_port": "The application database's port.",
    "pg_database": "The application database's name.",
    "pg_user": "The role that owns the watched tables; handlers' connections use it.",
    "pg_password": "That role's password.",
    "pg_superuser": "Only for `cdc db init` creating roles and the database.",
    "pg_superuser_password": "Only for `cdc db init`: unset, it makes no role or database.",
    "debezium_user": "Debezium's role (`LOGIN REPLICATION` only).",
    "debezium_password": "Debezium's password.",
    "connect_pg_host": "How Kafka Connect reaches PostgreSQL, where that differs from here "
    "(containers, Kubernetes).",
    "connect_pg_port": "The same for the port.",
    "connect_registry_url": "How Kafka Connect reaches the registry, where that differs.",
    "debezium_password_ref": "What the connector config holds instead of the password: a "
    "Connect config-provider reference, which the worker resolves from its own environment "
    "(the local stack, the containers and compose run workers with `config.providers=env`, "
    "allow-listed to that one variable).",
    "debezium_password_inline": "`true` puts the password itself in the connector config, "
    "for a worker without that provider (Connect then stores it and returns it from its REST "
    "API).",
    "handlers": "Handler module(s) or package(s) to import, comma-separated; every submodule "
    "of a package is imported too.",
    "group_id": "The consumer group (of the `default` workload; others add `.<name>`).",
    "kafka_session_timeout_ms": "How long the group waits for a consumer that stopped "
    "heartbeating (killed, cut off) before its partitions move. librdkafka heartbeats from its "
    "own thread, so a slow handler does not count; Kafka's own default is 45 s.",
    "dead_letter_topic": "The dead-letter topic; unset: `<topic_prefix>.dlq`.",
    "unrouted": "What happens to a record of a table or event type without handlers: counted "
    "and skipped, or parked in the dead-letter topic.",
    "retry_attempts": "Attempts in all before a change is dead-lettered.",
    "retry_backoff_s": "The first backoff, doubling at each failed attempt.",
    "retry_backoff_max_s": "The longest backoff.",
    "retry_jitter": "Each wait is drawn from `[ceiling * (1 - jitter), ceiling]`.",
    "handler_timeout_s": "An attempt running longer fails and is retried (unset: no limit). "
    "An async handler is cancelled; a sync one is left to finish on its own thread, its "
    "result fenced.",
    "concurrency": "Worker threads: records of different keys handled at once.",
    "max_in_flight": "Records held between fetch and commit before fetching pauses.",
    "shutdown_deadline_s": "How long running handlers get at shutdown.",
    "kafka_refused_timeout_s": "The broker refusing our credentials or its certificate this "
    "long, with no broker up meanwhile, stops `cdc run` with exit 2 and the reason.",
    "pg_pool_size": "Handlers' connection pool size; unset: the concurrency.",
    "ledger_table": "The processed-changes ledger, created on first use.",
    "ledger_retention_days": "Ledger rows older than this are deleted (keep it above the "
    "topics' retention).",
    "ledger_prune_interval_s": "How often a running consumer prunes the ledger (0: only when "
    "it first uses it); counted in `cdc_ledger_pruned_rows_total`.",
    "http_host": "Where `/metrics`, `/healthz` and `/readyz` are served.",
    "http_port": "Their port (0: any free port; unset: no endpoint).",
    "check_at_start": "Run `cdc check` before consuming, and refuse to start on an error.",
    "capture_check_interval_s": "How often the consumer asks Kafka Connect and PostgreSQL "
    "whether Debezium captures its tables (0: never).",
    "console_token": "The web console's access token (`cdc console`, `cdc run --console`), "
    "best as the file `cdc_console_token` in `CDC_SECRETS_DIR`; unset, the console will not "
    "start.",
    "console_host": "Where the console listens: loopback unless you say otherwise.",
    "console_port": "The console's port.",
    "slot_wal_warn_bytes": "WAL the replication slot may hold before `cdc check` and the "
    "consumer warn.",
}

# What each key of cdc.yaml means, by its place in the file (`<name>`: a key you choose).
CDC_YAML = {
    "connector": "The Debezium connector and what it makes.",
    "connector.name": "The Kafka Connect connector's name.",
    "connector.topic_prefix": "Topics are `<topic_prefix>.<schema>.<table>`; the dead-letter "
    "topic is `<topic_prefix>.dlq`.",
    "connector.slot": "The replication slot.",
    "connector.publication": "The publication `cdc connector apply` creates and keeps in sync.",
    "connector.internal_schema": "Where the heartbeat and signal tables live.",
    "connector.encoding": "`json` (schemas on), `json-noschema`, or `avro` (Apicurio, "
    "Confluent wire format).",
    "connector.snapshot_mode": "Debezium's snapshot mode.",
    "connector.heartbeat_interval_ms": "Debezium's heartbeats, which keep the slot advancing "
    "while the watched tables are quiet.",
    "connector.poll_interval_ms": "Debezium's wait for changes when none is queued (its "
    "default, 500, hands changes over in half-second bursts).",
    "connector.transaction_metadata": "BEGIN/END records, for `@on_transaction` handlers.",
    "connector.exactly_once": "Exactly-once source delivery: Debezium's records and offsets "
    "in one Kafka transaction, so a Connect crash re-sends nothing; needs workers with it "
    "enabled (`cdc stack up --exactly-once`).",
    "connector.topic_partitions": "Partitions of the topics Connect creates (-1: broker default).",
    "connector.topic_replication_factor": "Their replicas (-1: broker default).",
    "connector.max_record_bytes": "The largest change record that flows end to end (1 MiB to "
    "48 MiB).",
    "tables": "The watched tables, as `schema.table`.",
    "tables.<name>.replica_identity": "`full` or `default`: what PostgreSQL logs of an old row.",
    "tables.<name>.snapshot_reads": "Whether handlers get snapshot reads (their decorators may "
    "say otherwise).",
    "tables.<name>.exclude_columns": "Columns never sent.",
    "tables.<name>.key_columns": "Key, partition and order the records by these columns, not "
    "the primary key.",
    "tables.<name>.sensitive_columns": "Columns captured and given to handlers, but whose "
    "values are masked wherever cdc shows them: the console, and every reason the consumer "
    "logs or gives a dead letter.",
    "outbox": "Optional: domain events.",
    "outbox.table": "The outbox table, created by `cdc connector apply` if missing.",
    "outbox.topic_prefix": "Events go to `<topic_prefix>.<aggregate type>`; not under "
    "`connector.topic_prefix`.",
    "workloads": "Lanes of handlers, each consumed by a group of its own (`default` needs no "
    "entry).",
    "workloads.<name>.concurrency": "Records of different keys at once; unset: `CDC_CONCURRENCY`.",
    "workloads.<name>.max_in_flight": "Fetching pauses beyond this; unset: `CDC_MAX_IN_FLIGHT`.",
    "workloads.<name>.retry": "Retries; what it leaves unset comes from `CDC_RETRY_*`.",
    "workloads.<name>.retry.attempts": "Attempts in all.",
    "workloads.<name>.retry.backoff_s": "The first backoff.",
    "workloads.<name>.retry.backoff_max_s": "The longest backoff.",
    "workloads.<name>.retry.jitter": "Each wait is drawn from `[ceiling * (1 - jitter), ceiling]`.",
    "workloads.<name>.timeout_s": "An attempt running longer fails and is retried; unset: "
    "`CDC_HANDLER_TIMEOUT_S`.",
    "workloads.<name>.rate": "At most `runs` attempts per `per_s` seconds, started evenly spaced.",
    "workloads.<name>.rate.runs": "Attempts per period.",
    "workloads.<name>.rate.per_s": "The period, in seconds.",
    "workloads.<name>.dead_letter_topic": "A dead-letter topic of its own; unset: the "
    "consumer's, shared by every workload.",
    "workloads.<name>.group_id": "Its consumer group; unset: `CDC_GROUP_ID.<name>`.",
    "workloads.<name>.keep_order": "Whether a key parked for a handler holds the handler's "
    "later changes of it.",
    "workloads.<name>.replicas": "Consumers of it in the generated compose and Kubernetes outputs.",
    "schedules": "Recurring events, fired through the outbox (needs `outbox:`).",
    "schedules.<name>.every": "A cron expression in UTC (5 fields; 6 with seconds last), or an "
    "interval: `500ms`, `30s`, `5m`, `2h`, `1d`.",
    "schedules.<name>.event": "The event type fired.",
    "schedules.<name>.aggregate_type": "The event's aggregate type (its topic).",
    "schedules.<name>.data": "In every payload, as `Fired.data`.",
}

# Headings of the API page, by the submodule a name comes from.
API_GROUPS = {
    "cdc.routing": "Handlers and their results",
    "cdc.runtime": "The handler's context",
    "cdc.events": "Events, rows and values",
    "cdc.outbox": "Domain events",
    "cdc.schedule": "Recurring events",
    "cdc.errors": "Errors",
    "cdc.testing": "The test kit",
}


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", r"\|")


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _type(annotation: Any) -> str:
    """A field's type as a reader of the file or the environment sees it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return " | ".join(f"`{a}`" for a in args)
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return " | ".join(f"`{m.value}`" for m in annotation)
    if origin in (dict, tuple, list):
        return {dict: "mapping", tuple: "list", list: "list"}[origin]
    names = {SecretStr: "secret", Path: "path", bool: "bool", int: "int", float: "number"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(field: FieldInfo) -> str:
    found = []
    for meta in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if isinstance(meta, getattr(annotated_types, attr.capitalize())):
                found.append(f"{sign} {getattr(meta, attr)}")
    # Bounds on `X | None` sit on the inner Annotated type.
    for arg in typing.get_args(field.annotation):
        if typing.get_origin(arg) is typing.Annotated:
            found += _bounds(FieldInfo.from_annotation(arg)).split(", ")
    return ", ".join(f for f in found if f)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, BaseModel | dict | tuple) and not value:
        return "empty"
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{value}`" if value != "" else "empty"


def _described(names: list[str], descriptions: dict[str, str], what: str) -> None:
    missing = [n for n in names if n not in descriptions]
    stale = [n for n in descriptions if n not in names]
    if missing or stale:
        raise StaleReference(
            f"{what}: describe {missing} in docs/_hooks/reference.py; {stale} no longer exist"
        )


def settings() -> str:
    from cdc.settings import Settings

    fields = Settings.model_fields
    _described(list(fields), SETTINGS, "settings")
    rows = [
        (f"`CDC_{name.upper()}`", _type(f.annotation), _default(f), _bounds(f), SETTINGS[name])
        for name, f in fields.items()
    ]
    return _table(("variable", "type", "default", "bounds", "meaning"), rows)


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds, and whether it holds a mapping of them (one per name)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            found = _model_of(arg)
            if found[0] is not None:
                return found
    if origin is dict and inspect.isclass(args[1]) and issubclass(args[1], BaseModel):
        return args[1], True
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _yaml_keys(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo, bool]]:
    """(dotted key, field, whether it is a section) for every key under ``model``."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        inner, named = _model_of(field.annotation)
        yield key, field, inner is not None
        if inner is not None:
            yield from _yaml_keys(inner, f"{key}.<name>." if named else f"{key}.")


def cdc_yaml() -> str:
    from cdc.tables.config import WatchedTables

    keys = list(_yaml_keys(WatchedTables, ""))
    _described([k for k, _, _ in keys], CDC_YAML, "cdc.yaml keys")
    rows = [
        (
            f"`{key}`",
            "section" if section else _type(f.annotation),
            "" if section and not f.is_required() else _default(f),
            _bounds(f),
            CDC_YAML[key],
        )
        for key, f, section in keys
    ]
    return _table(("key", "type", "default", "bounds", "meaning"), rows)


def _help(text: str | None) -> str:
    """A command's help as paragraphs, each one line (docstrings wrap at 100 columns)."""
    paragraphs = inspect.cleandoc(text or "").partition("\f")[0].split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def cli() -> str:
    import typer.main

    from cdc.cli import app

    root = typer.main.get_command(app)
    root_ctx = root.make_context("cdc", [], resilient_parsing=True)
    out: list[str] = []

    def walk(command: Any, ctx: Any, path: str) -> None:
        out.append(f"## `{path}`\n\n{_help(command.help)}\n")
        out.append(f"```\n{command.get_usage(ctx)}\n```\n")
        params = [p.get_help_record(ctx) for p in command.get_params(ctx)]
        rows = [(f"`{opts}`", text) for opts, text in filter(None, params)]
        out.append(_table(("option or argument", "meaning"), rows) + "\n")
        for name, sub in getattr(command, "commands", {}).items():
            walk(
                sub,
                sub.make_context(name, [], parent=ctx, resilient_parsing=True),
                f"{path} {name}",
            )

    walk(root, root_ctx, "cdc")
    return "\n".join(out)


def _metric_rows(metrics: Any) -> list[tuple[str, ...]]:
    from prometheus_client.metrics import MetricWrapperBase

    rows = []
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            name, kind = metric._name, metric._type
            labels, doc = metric._labelnames, metric._documentation
        elif hasattr(metric, "labelnames") and hasattr(metric, "observe"):
            name, kind, labels, doc = (
                metric.name,
                "histogram",
                metric.labelnames,
                metric.documentation,
            )
        else:
            continue
        rows.append((name, kind, labels, doc))
    return [_metric_row(*row) for row in rows]


def _metric_row(name: str, kind: str, labels: Any, doc: str) -> tuple[str, ...]:
    shown = f"{name}_total" if kind == "counter" else name
    return (f"`{shown}`", kind, ", ".join(labels), doc)


def metrics() -> str:
    from cdc.runtime.metrics import Metrics
    from cdc.runtime.process_metrics import ProcessMetrics
    from cdc.schedule.scheduler import Counts, CountsCollector

    head = ("series", "type", "labels", "what")
    scheduler = [
        _metric_row(f.name, f.type, getattr(f, "_labelnames", ()), f.documentation)
        for f in CountsCollector(Counts()).collect()
    ]
    return "\n\n".join(
        [
            "### Per workload\n\nEach of these also carries the label `workload`.",
            _table(head, _metric_rows(Metrics())),
            "### Per process\n\nWhat a process watches once for all its workloads: no "
            "`workload` label.",
            _table(head, _metric_rows(ProcessMetrics()) + scheduler),
        ]
    )


def _exports(package: str) -> dict[str, str]:
    """Each name in ``package.__all__`` and the submodule it is imported from."""
    module = __import__(package, fromlist=["__all__"])
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    source = {
        alias.asname or alias.name: node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    return {name: source.get(name, package) for name in module.__all__}


def _api(package: str, group_of: Callable[[str], str]) -> str:
    groups: dict[str, list[str]] = {}
    for name, module in _exports(package).items():
        groups.setdefault(group_of(module), []).append(name)
    order = list(API_GROUPS.values())
    out = []
    for title in sorted(groups, key=lambda t: order.index(t) if t in order else len(order)):
        names = groups[title]
        out.append(f"## {title}\n")
        out += [f"::: {package}.{name}\n" for name in names]
    return "\n".join(out)


def api() -> str:
    def group(module: str) -> str:
        top = ".".join(module.split(".")[:2])
        return API_GROUPS.get(top, f"`{top}`")

    return _api("cdc", group)


def testing_api() -> str:
    return _api("cdc.testing", lambda module: f"From `{module}`")


GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings,
    "cdc-yaml": cdc_yaml,
    "cli": cli,
    "metrics": metrics,
    "api": api,
    "testing-api": testing_api,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)
