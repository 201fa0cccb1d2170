"""Read records from Kafka in tests, with a deadline instead of sleeps."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message


def consume(bootstrap: str, topics: list[str], group: str | None = None) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    consumer.subscribe(topics)
    return consumer


def read_records(
    bootstrap: str, topics: list[str], count: int, timeout: float = 60.0
) -> list[Message]:
    """The first ``count`` records of ``topics`` (from the beginning), read by a fresh group."""
    consumer = consume(bootstrap, topics)
    try:
        return wait_for_records(consumer, lambda r: len(r) >= count, timeout)
    finally:
        consumer.close()


def wait_for_records(
    consumer: Consumer, until: Callable[[list[Message]], bool], timeout: float = 60.0
) -> list[Message]:
    """Poll until ``until(records so far)`` holds; raise with what arrived if it never does."""
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF):
                continue
            raise RuntimeError(f"consumer error: {err}")
        records.append(msg)
        if until(records):
            return records
    summary = [(m.topic(), m.offset(), (m.value() or b"")[:200]) for m in records]
    raise TimeoutError(f"condition not met within {timeout}s; got {len(records)}: {summary}")
