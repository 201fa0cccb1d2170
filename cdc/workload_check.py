"""``cdc check`` on the workloads: each one a handler names is declared in the file, and each
one the file declares has handlers."""

from __future__ import annotations

from collections.abc import Sequence

from cdc.findings import Finding, Severity
from cdc.routing import Handler
from cdc.tables.config import WatchedTables
from cdc.tables.workloads import DEFAULT_WORKLOAD


def workload_findings(
    handlers: Sequence[Handler], watched: WatchedTables, file: str
) -> list[Finding]:
    findings = []
    used: dict[str, list[str]] = {}
    for handler in handlers:
        names = used.setdefault(handler.workload, [])
        if handler.name not in names:  # a function with two decorators is one handler
            names.append(handler.name)
    for name, names in sorted(used.items()):
        if name != DEFAULT_WORKLOAD and name not in watched.workloads:
            findings.append(
                Finding(
                    Severity.ERROR,
                    f"workload {name}",
                    f"named by {', '.join(names)} but not declared in {file}: it would run "
                    "with the environment's settings, most likely not what was meant",
                    f"declare it under `workloads:` in {file} (`{name}: {{}}` takes the "
                    "defaults), or correct the name in the handler",
                )
            )
    for name in sorted(watched.workloads.keys() - used.keys()):
        findings.append(
            Finding(
                Severity.WARNING,
                f"workload {name}",
                f"declared in {file} but no handler runs in it",
                f"give a handler `workload={name!r}`, or remove it from `workloads:`",
            )
        )
    return findings
