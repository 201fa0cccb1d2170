"""``cdc check`` on `key_columns`: a table keyed by other columns than its primary key needs
them in the old row PostgreSQL logs, or its deletes are keyed by NULLs."""

from __future__ import annotations

from collections.abc import Mapping

from cdc.findings import Finding, Severity, apply_fix
from cdc.partition_check import identity_name
from cdc.tables.config import WatchedTables
from cdc.tables.live import LiveTable


def key_findings(
    watched: WatchedTables, tables: Mapping[str, LiveTable], file: str
) -> list[Finding]:
    findings = []
    for name, options in watched.tables.items():
        table = tables.get(name)
        if table is None or not options.key_columns:
            continue  # a missing table is reported as such
        missing = [c for c in options.key_columns if c not in table.columns]
        if missing:
            findings.append(
                Finding(
                    Severity.ERROR,
                    name,
                    f"key_columns {', '.join(missing)}: no such column in {name}",
                    f"fix `key_columns` under `tables.{name}` in {file}, then {apply_fix(file)}",
                )
            )
            continue
        logged = table.old_row_columns
        uncovered = [c for c in options.key_columns if logged is not None and c not in logged]
        if uncovered:
            identity = identity_name(table.replica_identity)
            findings.append(
                Finding(
                    Severity.WARNING,
                    name,
                    f"key_columns {', '.join(uncovered)} are not in the old row PostgreSQL logs "
                    f"under REPLICA IDENTITY {identity}: a delete arrives keyed by NULL there, "
                    "on another partition than the key's other changes, and out of their order",
                    f"set `replica_identity: full` under `tables.{name}` in {file}, then "
                    f"{apply_fix(file)} (or key by primary key columns only)",
                )
            )
    return findings
