"""From an event to the handlers that want it."""

from cdc.routing.handlers import TableHandler, discover, handlers_of, on_change
from cdc.routing.outcome import DeadLetter, Retry
from cdc.routing.router import Route, Router

__all__ = [
    "DeadLetter",
    "Retry",
    "Route",
    "Router",
    "TableHandler",
    "discover",
    "handlers_of",
    "on_change",
]
