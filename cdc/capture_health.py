"""Is Debezium capturing every watched table? Two ways it stops without a word: the
connector or its task FAILED (a change over ``max_record_bytes``, a lost database...), or a
watched table left the publication (dropped and re-created: PostgreSQL drops it from the
publication with the table). Each problem comes with its remedy.

`cdc check`, `cdc connector status` and the consumer's capture watcher
(`cdc.runtime.capture_watch`) all judge with these functions."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from cdc.connect import ConnectClient, connect_database, status_rows
from cdc.errors import ConnectError
from cdc.findings import Finding, Severity, apply_fix
from cdc.settings import Settings
from cdc.slot_health import SlotHealth, read_slot, slot_findings
from cdc.tables.config import WatchedTables
from cdc.tables.limits import LARGEST_MAX_RECORD_BYTES
from cdc.tables.live import read_tables
from cdc.tables.sql import publication_or_none, publication_tables

# States in which the connector or a task captures nothing until someone acts. UNASSIGNED
# and RESTARTING pass by themselves.
_STOPPED = {
    "FAILED": "see `cdc connector status --json` for the whole trace, fix the cause, then "
    "run `cdc connector restart`",
    "PAUSED": "run `cdc connector restart` or resume it (PUT /connectors/<name>/resume)",
    "STOPPED": "resume it (PUT /connectors/<name>/resume)",
}
_TOO_LARGE = re.compile(r"RecordTooLargeException|MESSAGE_TOO_LARGE|max\.request\.size")


@dataclass(frozen=True)
class CaptureProblem(Finding):
    """Something that stops changes from being captured (always an error). ``check`` names
    the kind (a metric label): ``connector``, ``task``, ``publication``, ``table`` or
    ``slot``."""

    check: str = ""

    def one_line(self) -> str:
        return f"{self.subject}: {self.problem}; fix: {self.fix}"


def _problem(check: str, subject: str, problem: str, fix: str) -> CaptureProblem:
    return CaptureProblem(Severity.ERROR, subject, problem, fix, check)


@dataclass
class CaptureHealth:
    """What a look found: the problems, and what could not be looked at (``unknown``: Connect
    or PostgreSQL unreachable, or Connect not configured)."""

    problems: list[CaptureProblem] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)  # capture goes on, for now
    slot: SlotHealth | None = None  # None: not read


def instance_problems(
    watched: WatchedTables, status: dict[str, Any], file: str
) -> list[CaptureProblem]:
    """The connector and each task, from Connect's ``/status``, that captures nothing."""
    name = watched.connector.name
    problems = []
    for row in status_rows(status):
        if row.state not in _STOPPED:
            continue
        remedy = _STOPPED[row.state].replace("<name>", name)
        if row.state == "FAILED" and _TOO_LARGE.search(row.trace):
            limit = watched.connector.max_record_bytes
            remedy = (
                f"a change is larger than connector.max_record_bytes ({limit} bytes): raise it "
                f"in {file} (at most {LARGEST_MAX_RECORD_BYTES}), then {apply_fix(file)}"
            )
        task = row.instance != "connector"
        problems.append(
            _problem(
                "task" if task else "connector",
                f"connector {name}" + (f" {row.instance}" if task else ""),
                f"{row.state}: {row.trace}" if row.trace else row.state,
                remedy,
            )
        )
    return problems


def unpublished(watched: WatchedTables, published: Collection[str]) -> list[str]:
    """The tables the publication must hold and does not, as ``schema.table``."""
    return sorted(str(t) for t in publication_tables(watched) if str(t) not in published)


def publication_problems(
    watched: WatchedTables,
    published: Collection[str] | None,
    existing: Collection[str],
    file: str,
) -> list[CaptureProblem]:
    """A missing publication, and each table it should hold that is gone (``existing``: the
    tables the database has, of those it should hold) or was re-created outside it."""
    pub = watched.connector.publication
    if published is None:
        return [
            _problem(
                "publication",
                f"publication {pub}",
                "does not exist: no change is captured",
                f"{apply_fix(file)} to create it",
            )
        ]
    problems = []
    for table in unpublished(watched, published):
        if table not in existing:
            problems.append(
                _problem(
                    "table",
                    table,
                    "does not exist (dropped?): none of its changes are captured",
                    f"re-create it, then {apply_fix(file)}",
                )
            )
        else:
            problems.append(
                _problem(
                    "publication",
                    table,
                    f"is not in publication {pub} (dropped and re-created?): its changes "
                    "are not captured",
                    f"{apply_fix(file)}: it adds the table back and snapshots its rows, which "
                    "reach handlers that take snapshot reads as op r",
                )
            )
    return problems


def read_capture_health(watched: WatchedTables, settings: Settings, file: str) -> CaptureHealth:
    """Ask Kafka Connect and PostgreSQL; what cannot be asked is ``unknown``, not raised."""
    health = CaptureHealth()
    connector = None
    if not settings.connect_url:
        health.unknown.append("Kafka Connect is not configured (CDC_CONNECT_URL is empty)")
    else:
        connector = _ask_connect(watched, settings.connect_url, file, health)
    try:
        with connect_database(settings, timeout=10) as conn:
            published = publication_or_none(conn, watched.connector.publication)
            existing = set(read_tables(conn, publication_tables(watched)))
            slot = read_slot(conn, watched.connector.slot)
        health.problems.extend(publication_problems(watched, published, existing, file))
        _judge_slot(watched, slot, connector, settings.slot_wal_warn_bytes, file, health)
    except psycopg.Error as exc:
        health.unknown.append(f"PostgreSQL: {str(exc).strip()}")
    return health


def _judge_slot(
    watched: WatchedTables,
    slot: SlotHealth,
    connector: bool | None,
    warn_bytes: int,
    file: str,
    health: CaptureHealth,
) -> None:
    """A missing slot matters only where the connector exists (``connector``: whether it
    does, None: unknown); a lost one always."""
    health.slot = slot
    if not slot.exists and connector is not True:
        return
    name, tables = watched.connector.name, sorted(watched.tables)
    for finding in slot_findings(slot, name, tables, warn_bytes, file):
        if finding.severity is Severity.ERROR:
            health.problems.append(_problem("slot", finding.subject, finding.problem, finding.fix))
        else:
            health.warnings.append(finding)


def _ask_connect(watched: WatchedTables, url: str, file: str, health: CaptureHealth) -> bool | None:
    """Whether the connector exists (None: Connect could not be asked)."""
    client = ConnectClient(url, timeout=10.0)
    try:
        status = client.status(watched.connector.name)
        health.problems.extend(instance_problems(watched, status, file))
        return True
    except ConnectError as exc:
        if exc.status != 404:
            health.unknown.append(f"Kafka Connect at {url}: {exc}")
            return None
        health.problems.append(_no_connector(watched, url, file))
        return False
    except httpx.HTTPError as exc:
        health.unknown.append(f"Kafka Connect at {url}: {str(exc) or repr(exc)}")
        return None
    finally:
        client.close()


def _no_connector(watched: WatchedTables, url: str, file: str) -> CaptureProblem:
    return _problem(
        "connector",
        f"connector {watched.connector.name}",
        f"does not exist in Kafka Connect at {url}: no change is captured",
        f"{apply_fix(file)} to create it",
    )
