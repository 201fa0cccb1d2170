"""Test kit: the real stack for a test suite, and helpers to read what Debezium wrote."""

from cdc.testing.kafka import consume, wait_for_records
from cdc.testing.stack import start_stack

__all__ = ["consume", "start_stack", "wait_for_records"]
