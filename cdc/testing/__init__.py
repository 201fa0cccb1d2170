"""Test kit: the real stack for a test suite, and helpers to read what Debezium wrote."""

from cdc.testing.kafka import RecordReader, read_records
from cdc.testing.stack import start_stack

__all__ = ["RecordReader", "read_records", "start_stack"]
