"""What `cdc check` and the capture watcher report: a problem, its subject and its fix."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import StrEnum

from cdc.settings import Settings


def cdc_fix(command: str, file: str) -> str:
    """``run `cdc <command>```, on ``file`` where that is not the default watched-tables file."""
    if file == str(Settings.model_fields["watched_tables"].default):
        return f"run `cdc {command}`"
    return f"run `cdc {command} --tables {shlex.quote(file)}`"


def apply_fix(file: str) -> str:
    """The fix that puts ``file`` into the database and Kafka Connect."""
    return cdc_fix("connector apply", file)


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
