"""What `cdc check` and the capture watcher report: a problem, its subject and its fix."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    subject: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.subject}: {self.problem}\n  fix: {self.fix}"
