"""Read records from Kafka in tests, with a deadline instead of sleeps."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message


class RecordReader:
    """A throwaway consumer group that reads topics from the beginning.

    Each record is returned once: a topic that appears after the subscription rebalances the
    group, and without committed offsets the broker then sends the same records again."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"test-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        self._consumer.subscribe(topics)
        self._seen: set[tuple[str, int, int]] = set()
        self.records: list[Message] = []

    def wait(self, until: Callable[[list[Message]], bool], timeout: float = 60.0) -> list[Message]:
        """Poll until ``until(every record read so far)`` holds; return the records read by
        this call. Raise with what arrived if it never holds."""
        start = len(self.records)
        deadline = time.monotonic() + timeout
        while not until(self.records):
            if time.monotonic() > deadline:
                summary = [(m.topic(), m.offset(), (m.value() or b"")[:200]) for m in self.records]
                raise TimeoutError(
                    f"condition not met within {timeout}s; got {len(self.records)}: {summary}"
                )
            msg = self._consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF):
                    continue
                raise RuntimeError(f"consumer error: {err}")
            coordinates = (str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0))
            if coordinates not in self._seen:
                self._seen.add(coordinates)
                self.records.append(msg)
        return self.records[start:]

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(
    bootstrap: str, topics: list[str], count: int, timeout: float = 60.0
) -> list[Message]:
    """The first ``count`` records of ``topics``, from the beginning."""
    with RecordReader(bootstrap, topics) as reader:
        return reader.wait(lambda r: len(r) >= count, timeout)
