"""Test kit: change factories, a handler runner, the real stack and consumers on it."""

from cdc.runtime.runs import Outcome
from cdc.testing.consumer import RunningConsumer
from cdc.testing.factories import ChangeFactory
from cdc.testing.kafka import RecordReader, read_records
from cdc.testing.pipeline import Pipelines, isolated, remove_connector
from cdc.testing.run import HandlerRunner, run_handler
from cdc.testing.stack import RunningStack, running_stack, start_stack

__all__ = [
    "ChangeFactory",
    "HandlerRunner",
    "Outcome",
    "Pipelines",
    "RecordReader",
    "RunningConsumer",
    "RunningStack",
    "isolated",
    "read_records",
    "remove_connector",
    "run_handler",
    "running_stack",
    "start_stack",
]
