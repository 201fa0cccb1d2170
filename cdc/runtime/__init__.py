"""Running handlers on the records of Kafka topics."""

from cdc.runtime.consumer import Handled, Observer, Runtime
from cdc.runtime.context import Context, Outgoing, Resources
from cdc.runtime.dead_letter import DeadLetterSink, Rejected
from cdc.runtime.dispatch import Dispatcher
from cdc.runtime.runs import Backoff, HandlerRun, Outcome

__all__ = [
    "Backoff",
    "Context",
    "DeadLetterSink",
    "Dispatcher",
    "Handled",
    "HandlerRun",
    "Observer",
    "Outcome",
    "Outgoing",
    "Rejected",
    "Resources",
    "Runtime",
]
