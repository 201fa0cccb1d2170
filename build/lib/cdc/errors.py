"""Typed errors. Each carries the context an operator needs to act on it."""

from __future__ import annotations


class CdcError(Exception):
    """Base of every error the framework raises on purpose."""


class ConfigError(CdcError):
    """The watched-tables file or the settings are invalid."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{listing}")


class StackError(CdcError):
    """A component of the local stack failed to start or stop."""

    def __init__(self, component: str, reason: str, log_tail: str = "") -> None:
        self.component = component
        self.reason = reason
        self.log_tail = log_tail
        message = f"{component}: {reason}"
        if log_tail:
            message += f"\n--- last lines of the {component} log ---\n{log_tail}"
        super().__init__(message)


class ConnectError(CdcError):
    """Kafka Connect answered with an error."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        super().__init__(f"Kafka Connect {method} {path} -> {status}: {body}")
