"""``cdc check`` on the handlers of whole transactions: the connector must send its
transaction metadata, and their tables must be watched."""

from __future__ import annotations

from collections.abc import Sequence

from cdc.findings import Finding, Severity, apply_fix
from cdc.routing.declared import TransactionHandler
from cdc.tables.config import WatchedTables


def transaction_findings(
    handlers: Sequence[TransactionHandler], watched: WatchedTables, file: str
) -> list[Finding]:
    findings = []
    if handlers and not watched.connector.transaction_metadata:
        names = ", ".join(h.name for h in handlers)
        findings.append(
            Finding(
                Severity.ERROR,
                f"connector {watched.connector.name}",
                f"{names} take whole transactions, but the connector sends no transaction "
                "metadata: their changes would go to the dead-letter topic",
                f"set `transaction_metadata: true` under `connector:` in {file}, then "
                f"{apply_fix(file)}",
            )
        )
    for handler in handlers:
        for table in sorted(handler.tables - set(watched.tables)):
            findings.append(
                Finding(
                    Severity.ERROR,
                    table,
                    f"{handler.name} takes the transactions of {table}, which {file} does "
                    "not watch: it would never see that table's changes",
                    f"add `{table}: {{}}` under `tables:` in {file}, then {apply_fix(file)}",
                )
            )
    return findings
