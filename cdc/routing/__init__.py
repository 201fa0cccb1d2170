"""From an event to the handlers that want it."""

from cdc.routing.declared import EventHandler, Handler, TableHandler, TransactionHandler
from cdc.routing.handlers import (
    discover,
    handlers_of,
    on_change,
    on_event,
    on_transaction,
)
from cdc.routing.outcome import DeadLetter, Retry
from cdc.routing.router import Routable, Route, Router, Runnable

__all__ = [
    "DeadLetter",
    "EventHandler",
    "Handler",
    "Retry",
    "Routable",
    "Route",
    "Router",
    "Runnable",
    "TableHandler",
    "TransactionHandler",
    "discover",
    "handlers_of",
    "on_change",
    "on_event",
    "on_transaction",
]
