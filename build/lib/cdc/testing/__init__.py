"""Test kit: the real stack for a test suite, and helpers to read what Debezium wrote."""

from cdc.testing.kafka import consume, read_records, wait_for_records
from cdc.testing.stack import start_stack

__all__ = ["consume", "read_records", "start_stack", "wait_for_records"]
