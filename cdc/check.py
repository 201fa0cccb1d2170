"""``cdc check``: do the handlers, the watched-tables file, the connector in Kafka Connect, the
publication and the tables' replica identity agree? Every mismatch comes with its fix.

`read_live_state` reads what is there; `compare` is pure, so every finding is testable from
plain data; `run_check` does both. The consumer runs the same check before it starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from cdc.capture_health import instance_problems
from cdc.connect import ConnectClient, connect_database, render_config
from cdc.errors import ConnectError
from cdc.findings import Finding, Severity, apply_fix, cdc_fix
from cdc.handler_check import event_handler_findings, handler_findings
from cdc.key_check import key_findings
from cdc.partition_check import (
    identity_name,
    partition_findings,
    through_parents,
)
from cdc.replication_check import ClusterTopics, read_topics, replication_findings
from cdc.routing.declared import EventHandler, Handler, TableHandler, TransactionHandler
from cdc.settings import MASK, Settings, is_secret_key
from cdc.slot_health import SlotHealth, read_slot, slot_findings
from cdc.tables.config import WatchedTables
from cdc.tables.connector import captured_tables
from cdc.tables.live import LiveTable, read_tables
from cdc.tables.sql import (
    OUTBOX_ADDED,
    OUTBOX_COLUMNS,
    publication_tables,
    published_tables,
    publishes_via_root,
)
from cdc.transaction_check import transaction_findings
from cdc.workload_check import workload_findings

__all__ = [
    "ConnectorState",
    "Finding",
    "LiveState",
    "LiveTable",
    "Report",
    "Severity",
    "compare",
    "read_live_state",
    "run_check",
]

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
class LiveState:
    connector: ConnectorState
    publication: frozenset[str] | None  # its tables as schema.table; None: no publication
    tables: Mapping[str, LiveTable]  # watched tables that exist, by schema.table
    database_error: str | None = None  # PostgreSQL could not be read: the two above are empty
    # The publication's publish_via_partition_root: off, a watched partitioned table's
    # changes are published under its partitions' names, which Debezium does not watch.
    via_root: bool = True
    slot: SlotHealth | None = None  # the connector's replication slot; None: not read
    topics: ClusterTopics | None = None  # our topics' replication; None: not read


def run_check(handlers: Sequence[Handler], watched: WatchedTables, settings: Settings) -> Report:
    return compare(
        handlers,
        watched,
        read_live_state(watched, settings),
        file=str(settings.watched_tables),
        slot_warn_bytes=settings.slot_wal_warn_bytes,
    )


def read_live_state(watched: WatchedTables, settings: Settings) -> LiveState:
    """Ask Kafka Connect and PostgreSQL; an unreachable one is recorded, not raised."""
    rendered = render_config(watched, settings)
    if not settings.connect_url:
        connector = ConnectorState("", rendered, None)
    else:
        connector = _ask_connect(watched, settings, rendered)
    topics = read_topics(watched, settings)
    try:
        with connect_database(settings, timeout=10) as conn:
            pub = watched.connector.publication
            via_root = publishes_via_root(conn, pub)
            return LiveState(
                connector=connector,
                publication=None if via_root is None else frozenset(published_tables(conn, pub)),
                tables=read_tables(conn, captured_tables(watched), types=True),
                via_root=via_root is not False,
                slot=read_slot(conn, watched.connector.slot),
                topics=topics,
            )
    except psycopg.OperationalError as exc:
        return LiveState(connector, None, {}, database_error=str(exc).strip(), topics=topics)


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


def compare(
    handlers: Sequence[Handler],
    watched: WatchedTables,
    live: LiveState,
    *,
    file: str = "cdc.yaml",
    slot_warn_bytes: int = Settings.model_fields["slot_wal_warn_bytes"].default,
) -> Report:
    """Every mismatch between the handlers, the watched-tables file (``file`` names it in the
    fixes) and the live state."""
    findings = _connector(watched, live.connector, file)
    if live.slot is not None and live.connector.live is not None:
        # Without a connector there is no slot to expect; that finding says what to do.
        findings += slot_findings(
            live.slot, watched.connector.name, sorted(watched.tables), slot_warn_bytes, file
        )
    if live.connector.status is not None:
        findings += instance_problems(watched, live.connector.status, file)
    if live.topics is not None:
        findings += replication_findings(live.topics)
    tables: Mapping[str, LiveTable] | None = live.tables
    if live.database_error is not None:
        tables = None  # unknown, not absent: report only what the file alone shows
        findings.append(
            Finding(
                Severity.ERROR,
                "database",
                f"cannot be read: {live.database_error}",
                f"start PostgreSQL or correct the CDC_PG_* settings, then "
                f"{cdc_fix('check', file)} again",
            )
        )
    else:
        findings += _publication(watched, through_parents(live.publication, live.tables), file)
        findings += _tables(watched, live.tables, file)
        findings += partition_findings(watched, live.tables, live.via_root, file)
        findings += key_findings(watched, live.tables, file)
        findings += _outbox(watched, live.tables, file)
    whole = frozenset(t for h in handlers if isinstance(h, TransactionHandler) for t in h.tables)
    findings += handler_findings(
        [h for h in handlers if isinstance(h, TableHandler)], watched, tables, file, whole
    )
    findings += event_handler_findings(
        [h for h in handlers if isinstance(h, EventHandler)], watched, file
    )
    findings += transaction_findings(
        [h for h in handlers if isinstance(h, TransactionHandler)], watched, file
    )
    findings += workload_findings(handlers, watched, file)
    # Handlers sharing a model would report the same model finding once each.
    return Report(list(dict.fromkeys(findings)))


def _connector(watched: WatchedTables, state: ConnectorState, file: str) -> list[Finding]:
    subject = f"connector {watched.connector.name}"
    if not state.url:
        return []  # no CDC_CONNECT_URL: the connector is managed elsewhere (Strimzi)
    if state.error is not None:
        return [
            Finding(
                Severity.ERROR,
                subject,
                f"Kafka Connect at {state.url} cannot be asked: {state.error}",
                "start Kafka Connect or point CDC_CONNECT_URL at it, then "
                f"{cdc_fix('check', file)} again",
            )
        ]
    if state.live is None:
        return [
            Finding(
                Severity.ERROR,
                subject,
                f"does not exist in Kafka Connect at {state.url}",
                f"{apply_fix(file)} to create it",
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
            f"{apply_fix(file)} to put the config the file renders",
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


def _publication(
    watched: WatchedTables, published: frozenset[str] | None, file: str
) -> list[Finding]:
    subject = f"publication {watched.connector.publication}"
    if published is None:
        return [
            Finding(Severity.ERROR, subject, "does not exist", f"{apply_fix(file)} to create it")
        ]
    wanted = {str(t) for t in publication_tables(watched)}
    missing, extra = sorted(wanted - published), sorted(published - wanted)
    if not (missing or extra):
        return []
    parts = [f"lacks {', '.join(missing)}"] if missing else []
    parts += [f"also publishes {', '.join(extra)}"] if extra else []
    return [
        Finding(Severity.ERROR, subject, "; ".join(parts), f"{apply_fix(file)} to set its tables")
    ]


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
                    f"create it, or remove `{name}` from `tables:` in {file}, "
                    f"then {apply_fix(file)}",
                )
            )
        elif (have := identity_name(table.replica_identity)) != options.replica_identity.name:
            findings.append(
                Finding(
                    Severity.ERROR,
                    name,
                    f"replica identity is {have} in the database, but {file} "
                    f"declares {options.replica_identity}",
                    f"{apply_fix(file)} (it runs ALTER TABLE {name} REPLICA IDENTITY "
                    f"{options.replica_identity.name})",
                )
            )
        if table is not None and table.multidimensional:
            findings.append(_multidimensional(name, table.multidimensional))
    return findings


def _multidimensional(name: str, columns: frozenset[str]) -> Finding:
    return Finding(
        Severity.WARNING,
        name,
        f"column(s) {', '.join(sorted(columns))} are declared multi-dimensional arrays, whose "
        "values Debezium cannot carry: numbers arrive as a row of NULLs, text as "
        "Unrepresentable",
        "store them as one-dimensional arrays or as jsonb",
    )


def _outbox(watched: WatchedTables, tables: Mapping[str, LiveTable], file: str) -> list[Finding]:
    if watched.outbox is None:
        return []
    name = watched.outbox.table
    table = tables.get(name)
    if table is None:
        return [Finding(Severity.ERROR, name, "no outbox table in the database", apply_fix(file))]
    missing = [c for c in OUTBOX_COLUMNS if c not in table.columns]
    if not missing:
        if OUTBOX_ADDED in table.columns:
            return []
        return [
            Finding(
                Severity.ERROR,
                name,
                f"the outbox table lacks the {OUTBOX_ADDED} column `cdc.emit` writes",
                apply_fix(file),
            )
        ]
    return [
        Finding(
            Severity.ERROR,
            name,
            f"the outbox table lacks the column(s) {', '.join(missing)}",
            "add them (see `cdc.emit`) or name another table under `outbox:`",
        )
    ]
