"""``cdc check``: do the handlers, the watched-tables file, the connector in Kafka Connect, the
publication and the tables' replica identity agree? Every mismatch comes with its fix.

`read_live_state` reads what is there; `compare` is pure, so every finding is testable from
plain data; `run_check` does both. The consumer runs the same check before it starts.
"""

from __future__ import annotations

import re
import types
import typing
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import psycopg
from pydantic import BaseModel

from cdc.capture_health import APPLY, instance_problems, unpublished
from cdc.connect import ConnectClient, connect_database, render_config
from cdc.errors import ConnectError
from cdc.events import Op
from cdc.findings import Finding, Severity
from cdc.routing.handlers import EventHandler, Handler, TableHandler
from cdc.settings import MASK, Settings, is_secret_key
from cdc.tables.config import ReplicaIdentity, TableOptions, WatchedTables
from cdc.tables.connector import captured_tables
from cdc.tables.sql import OUTBOX_COLUMNS, publication_or_none, publication_tables

# pg_class.relreplident; the names are what ALTER TABLE ... REPLICA IDENTITY takes.
IDENTITY_NAMES = {"d": "DEFAULT", "f": "FULL", "n": "NOTHING", "i": "INDEX"}

_REFERENCE = re.compile(r"^\$\{[^}]*\}$")  # a Connect config-provider reference, not a secret


@dataclass
class Report:
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def lines(self) -> list[str]:
        """One entry per finding, errors first: ``error: <subject>: <problem>\\n  fix: ...``."""
        return [str(f) for f in (*self.errors, *self.warnings)]


@dataclass(frozen=True)
class ConnectorState:
    """The connector in Kafka Connect beside the config the file and settings render.

    Both configs may hold the Debezium password, so neither appears in ``repr``."""

    url: str
    rendered: dict[str, str] = field(repr=False)
    live: dict[str, str] | None = field(repr=False)  # None: no such connector
    error: str | None = None  # Connect could not be asked: nothing is known about `live`
    status: dict[str, Any] | None = None  # Connect's /status of the connector, if it exists


@dataclass(frozen=True)
class LiveTable:
    replica_identity: str  # pg_class.relreplident: d, f, n or i
    primary_key: frozenset[str]
    columns: frozenset[str]


@dataclass(frozen=True)
class LiveState:
    connector: ConnectorState
    publication: frozenset[str] | None  # its tables as schema.table; None: no publication
    tables: Mapping[str, LiveTable]  # watched tables that exist, by schema.table
    database_error: str | None = None  # PostgreSQL could not be read: the two above are empty


def run_check(handlers: Sequence[Handler], watched: WatchedTables, settings: Settings) -> Report:
    return compare(
        handlers, watched, read_live_state(watched, settings), file=str(settings.watched_tables)
    )


def read_live_state(watched: WatchedTables, settings: Settings) -> LiveState:
    """Ask Kafka Connect and PostgreSQL; an unreachable one is recorded, not raised."""
    rendered = render_config(watched, settings)
    if not settings.connect_url:
        connector = ConnectorState("", rendered, None)
    else:
        connector = _ask_connect(watched, settings, rendered)
    try:
        with connect_database(settings, timeout=10) as conn:
            published = publication_or_none(conn, watched.connector.publication)
            return LiveState(
                connector=connector,
                publication=None if published is None else frozenset(published),
                tables=_read_tables(conn, watched),
            )
    except psycopg.OperationalError as exc:
        return LiveState(connector, None, {}, database_error=str(exc).strip())


def _ask_connect(
    watched: WatchedTables, settings: Settings, rendered: dict[str, str]
) -> ConnectorState:
    try:
        client = ConnectClient(settings.connect_url, timeout=10.0)
        try:
            live = client.get_config(watched.connector.name)
            status = None if live is None else client.status(watched.connector.name)
        finally:
            client.close()
        return ConnectorState(settings.connect_url, rendered, live, status=status)
    except (httpx.HTTPError, ConnectError) as exc:
        return ConnectorState(settings.connect_url, rendered, None, error=str(exc) or repr(exc))


def _read_tables(
    conn: psycopg.Connection[tuple[Any, ...]], watched: WatchedTables
) -> dict[str, LiveTable]:
    found: dict[str, LiveTable] = {}
    for t in captured_tables(watched):
        row = conn.execute(
            "SELECT c.relreplident, "
            "ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid "
            "AND a.attnum > 0 AND NOT a.attisdropped), "
            "ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = c.oid AND i.indisprimary) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
            (t.schema_, t.table),
        ).fetchone()
        if row is not None:
            identity, columns, key = row
            found[str(t)] = LiveTable(str(identity), frozenset(key), frozenset(columns))
    return found


def compare(
    handlers: Sequence[Handler],
    watched: WatchedTables,
    live: LiveState,
    *,
    file: str = "cdc.yaml",
) -> Report:
    """Every mismatch between the handlers, the watched-tables file (``file`` names it in the
    fixes) and the live state."""
    findings = _connector(watched, live.connector)
    if live.connector.status is not None:
        findings += instance_problems(watched, live.connector.status, file)
    tables: Mapping[str, LiveTable] | None = live.tables
    if live.database_error is not None:
        tables = None  # unknown, not absent: report only what the file alone shows
        findings.append(
            Finding(
                Severity.ERROR,
                "database",
                f"cannot be read: {live.database_error}",
                "start PostgreSQL or correct the CDC_PG_* settings, then run `cdc check` again",
            )
        )
    else:
        findings += _publication(watched, live.publication)
        findings += _tables(watched, live.tables, file)
        findings += _outbox(watched, live.tables)
    findings += _handlers(
        [h for h in handlers if isinstance(h, TableHandler)], watched, tables, file
    )
    findings += _event_handlers([h for h in handlers if isinstance(h, EventHandler)], watched, file)
    # Handlers sharing a model would report the same model finding once each.
    return Report(list(dict.fromkeys(findings)))


def _connector(watched: WatchedTables, state: ConnectorState) -> list[Finding]:
    subject = f"connector {watched.connector.name}"
    if not state.url:
        return []  # no CDC_CONNECT_URL: the connector is managed elsewhere (Strimzi)
    if state.error is not None:
        return [
            Finding(
                Severity.ERROR,
                subject,
                f"Kafka Connect at {state.url} cannot be asked: {state.error}",
                "start Kafka Connect or point CDC_CONNECT_URL at it, then run `cdc check` again",
            )
        ]
    if state.live is None:
        return [
            Finding(
                Severity.ERROR,
                subject,
                f"does not exist in Kafka Connect at {state.url}",
                f"{APPLY} to create it",
            )
        ]
    diff = _config_diff(state.live, state.rendered)
    if not diff:
        return []
    return [
        Finding(
            Severity.ERROR,
            subject,
            f"its config in Kafka Connect differs from the file in {len(diff)} key(s): "
            + "; ".join(diff),
            f"{APPLY} to put the config the file renders",
        )
    ]


def _config_diff(live: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    diff = []
    for key in sorted(live.keys() | wanted.keys()):
        have, want = live.get(key), wanted.get(key)
        if have == want:
            continue
        if want is None:
            diff.append(f"{key} is {_shown(key, have)} but should not be set")
        elif have is None:
            diff.append(f"{key} is missing (expected {_shown(key, want)})")
        else:
            diff.append(f"{key} is {_shown(key, have)} (expected {_shown(key, want)})")
    return diff


def _shown(key: str, value: str | None) -> str:
    if value is not None and is_secret_key(key) and not _REFERENCE.match(value):
        return MASK
    return repr(value)


def _publication(watched: WatchedTables, published: frozenset[str] | None) -> list[Finding]:
    subject = f"publication {watched.connector.publication}"
    if published is None:
        return [Finding(Severity.ERROR, subject, "does not exist", f"{APPLY} to create it")]
    missing = unpublished(watched, published)
    extra = sorted(published - {str(t) for t in publication_tables(watched)})
    if not (missing or extra):
        return []
    parts = [f"lacks {', '.join(missing)}"] if missing else []
    parts += [f"also publishes {', '.join(extra)}"] if extra else []
    return [Finding(Severity.ERROR, subject, "; ".join(parts), f"{APPLY} to set its tables")]


def _tables(watched: WatchedTables, tables: Mapping[str, LiveTable], file: str) -> list[Finding]:
    findings = []
    for name, options in watched.tables.items():
        table = tables.get(name)
        if table is None:
            findings.append(
                Finding(
                    Severity.ERROR,
                    name,
                    "no such table in the database",
                    f"create it, or remove `{name}` from `tables:` in {file}, then {APPLY}",
                )
            )
        elif _identity(table) != options.replica_identity.name:
            findings.append(
                Finding(
                    Severity.ERROR,
                    name,
                    f"replica identity is {_identity(table)} in the database, but {file} "
                    f"declares {options.replica_identity}",
                    f"{APPLY} (it runs ALTER TABLE {name} REPLICA IDENTITY "
                    f"{options.replica_identity.name})",
                )
            )
    return findings


def _outbox(watched: WatchedTables, tables: Mapping[str, LiveTable]) -> list[Finding]:
    if watched.outbox is None:
        return []
    name = watched.outbox.table
    table = tables.get(name)
    if table is None:
        return [Finding(Severity.ERROR, name, "no outbox table in the database", APPLY)]
    missing = [c for c in OUTBOX_COLUMNS if c not in table.columns]
    if not missing:
        return []
    return [
        Finding(
            Severity.ERROR,
            name,
            f"the outbox table lacks the column(s) {', '.join(missing)}",
            "add them (see `cdc.emit`) or name another table under `outbox:`",
        )
    ]


def _event_handlers(
    handlers: Sequence[EventHandler], watched: WatchedTables, file: str
) -> list[Finding]:
    if not handlers or watched.outbox is not None:
        return []
    return [
        Finding(
            Severity.ERROR,
            "outbox",
            f"events are handled by {', '.join(h.name for h in handlers)} but {file} declares "
            "no outbox: Debezium routes no events, so they never run",
            f"add `outbox: {{table: public.outbox}}` to {file}, then {APPLY}",
        )
    ]


def _identity(table: LiveTable) -> str:
    return IDENTITY_NAMES.get(table.replica_identity, repr(table.replica_identity))


def _handlers(
    handlers: Sequence[TableHandler],
    watched: WatchedTables,
    tables: Mapping[str, LiveTable] | None,
    file: str,
) -> list[Finding]:
    """``tables`` is None when the database could not be read."""
    findings = []
    by_table: dict[str, list[TableHandler]] = defaultdict(list)
    for handler in handlers:
        by_table[handler.table].append(handler)
    for name, group in by_table.items():
        options = watched.tables.get(name)
        if options is None:
            findings.append(
                Finding(
                    Severity.ERROR,
                    name,
                    f"handled by {', '.join(h.name for h in group)} but not in {file}: "
                    "Debezium does not capture it, so they never run",
                    f"add `{name}: {{}}` under `tables:` in {file}, then {APPLY}",
                )
            )
            continue
        table = None if tables is None else tables.get(name)
        if tables is not None and table is None:
            continue  # reported as a missing table
        for handler in group:
            findings += _handler(handler, name, options, table, file)
    for name in watched.tables.keys() - by_table.keys():
        findings.append(
            Finding(
                Severity.WARNING,
                name,
                f"captured (in {file}) but no handler reacts to its changes",
                f'add a handler with `@on_change("{name}")`, or remove `{name}` from '
                f"`tables:` in {file} and {APPLY}",
            )
        )
    return findings


def _handler(
    handler: TableHandler, name: str, options: TableOptions, table: LiveTable | None, file: str
) -> list[Finding]:
    """What one handler of a watched table needs from it; ``table`` None: not known."""
    findings = []
    not_full = _not_full(name, options, table, file)
    if not_full is not None and handler.reads_before and handler.ops & {Op.UPDATE, Op.DELETE}:
        why, fix = not_full
        if Op.UPDATE in handler.ops:
            severity, consequence = Severity.ERROR, "an update carries no old row"
        else:
            severity, consequence = Severity.WARNING, "a delete's old row has only the key"
        findings.append(
            Finding(
                severity,
                f"handler {handler.name}",
                f"reads `before`, but {why}: {consequence}",
                fix,
            )
        )
    model = handler.model
    if model is None:
        return findings
    subject = f"model {model.__module__}.{model.__qualname__} ({name})"
    columns = _model_columns(model)
    for column, field_name in columns.items():
        if column in options.exclude_columns:
            findings.append(
                Finding(
                    Severity.ERROR,
                    subject,
                    f"field {field_name!r} reads column {column!r}, which {file} excludes: "
                    "Debezium never sends it",
                    f"remove {column!r} from `exclude_columns` under `tables.{name}` in {file} "
                    f"and {APPLY}, or drop the field",
                )
            )
        elif table is not None and column not in table.columns:
            findings.append(
                Finding(
                    Severity.ERROR,
                    subject,
                    f"field {field_name!r} reads column {column!r}, which {name} does not have",
                    f"rename or drop the field (columns of {name}: "
                    f"{', '.join(sorted(table.columns))})",
                )
            )
    if not_full is not None and table is not None and Op.DELETE in handler.ops:
        # With a non-FULL identity a delete's `before` has every column, but only the key
        # columns have values: a field that rejects null fails on every delete.
        strict = sorted(
            field_name
            for column, field_name in columns.items()
            if column in table.columns
            and column not in table.primary_key
            and not _accepts_none(model.model_fields[field_name].annotation)
        )
        if strict:
            why, fix = not_full
            findings.append(
                Finding(
                    Severity.ERROR,
                    subject,
                    f"handler {handler.name} takes deletes, but {why}: their `before` has only "
                    f"the key ({', '.join(sorted(table.primary_key)) or 'none'}), so "
                    f"{', '.join(strict)} would be null and the row fails validation",
                    f"{fix}; or make those fields optional (`... | None`)",
                )
            )
    return findings


def _not_full(
    name: str, options: TableOptions, table: LiveTable | None, file: str
) -> tuple[str, str] | None:
    """Why the table does not send whole old rows, and the fix; None when it does."""
    if options.replica_identity is not ReplicaIdentity.FULL:
        return (
            f"{file} declares {name} with replica identity {options.replica_identity}",
            f"set `replica_identity: full` under `tables.{name}` in {file}, then {APPLY}",
        )
    if table is not None and _identity(table) != "FULL":
        return (
            f"{name} has replica identity {_identity(table)} in the database "
            f"(though {file} declares full)",
            f"{APPLY} (it runs ALTER TABLE {name} REPLICA IDENTITY FULL)",
        )
    return None


def _model_columns(model: type[BaseModel]) -> dict[str, str]:
    """The column each field reads (its alias, else its name) -> the field's name."""
    columns = {}
    for field_name, info in model.model_fields.items():
        alias = info.validation_alias
        columns[alias if isinstance(alias, str) else info.alias or field_name] = field_name
    return columns


def _accepts_none(annotation: Any) -> bool:
    if annotation in (None, type(None), Any, object):
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _accepts_none(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, typing.Literal):
        return any(_accepts_none(arg) for arg in typing.get_args(annotation))
    return False
