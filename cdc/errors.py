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


class KafkaRefused(CdcError):
    """The broker kept refusing our credentials or its certificate our trust: retrying
    does not help until the settings change."""

    def __init__(self, seconds: float, reason: str) -> None:
        self.seconds = seconds
        self.reason = reason
        super().__init__(
            f"Kafka refused the connection for {seconds:.0f}s: {reason} (check the "
            "kafka_sasl_* and kafka_ssl_* settings)"
        )


class DecodeError(CdcError):
    """A Kafka record that cannot be read as a Debezium event. It is the record's fault:
    retrying will not help, so it belongs in the dead-letter topic."""

    def __init__(
        self, reason: str, *, topic: str, partition: int, offset: int, part: str = "value"
    ) -> None:
        self.reason = reason
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.part = part
        super().__init__(f"{topic}[{partition}]@{offset} {part}: {reason}")


class RegistryError(CdcError):
    """The schema registry could not be reached or answered with an error. Unlike a
    `DecodeError` this is not the record's fault: try again later."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"schema registry {url}: {reason}")


class EmitError(CdcError, ValueError):
    """An event `emit` refuses: it would fail downstream (an aggregate type that cannot name a
    topic, a payload that is not JSON). Never transient: a handler raising it is
    dead-lettered at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("cannot emit: " + "; ".join(problems))


class RecoveryError(CdcError):
    """A lost or missing replication slot could not be given back to the connector; the
    message says what to do by hand."""
