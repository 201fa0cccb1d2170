"""React to every change in PostgreSQL, in Python.

What a handler author needs is here; the rest lives in named submodules: `cdc.events` (every
event type), `cdc.decoding` (decoders), `cdc.settings`, `cdc.tables.config` (the watched-tables
file), `cdc.runtime`, `cdc.errors`, `cdc.testing` (the test kit)."""

__version__ = "0.2.0"

from cdc.errors import CdcError, ConfigError, DecodeError, EmitError
from cdc.events import (
    MICROS,
    MILLIS,
    UNAVAILABLE,
    Change,
    Changes,
    Columns,
    DomainEvent,
    Event,
    KafkaCoordinates,
    Kind,
    Op,
    Row,
    Scale,
    Source,
    Unavailable,
    Unrepresentable,
)
from cdc.outbox import aemit, emit
from cdc.routing import DeadLetter, Retry, on_change, on_event, on_transaction
from cdc.runtime import Context
from cdc.schedule import Fired, every

__all__ = [
    "MICROS",
    "MILLIS",
    "UNAVAILABLE",
    "CdcError",
    "Change",
    "Changes",
    "Columns",
    "ConfigError",
    "Context",
    "DeadLetter",
    "DecodeError",
    "DomainEvent",
    "EmitError",
    "Event",
    "Fired",
    "KafkaCoordinates",
    "Kind",
    "Op",
    "Retry",
    "Row",
    "Scale",
    "Source",
    "Unavailable",
    "Unrepresentable",
    "aemit",
    "emit",
    "every",
    "on_change",
    "on_event",
    "on_transaction",
]
