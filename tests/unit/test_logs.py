"""librdkafka's own log lines come through our logger as `kafka.log` events at their level,
never raw (`%3|...`) on stderr."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import Consumer

from cdc.logs import KAFKA_LOGGER
from cdc.settings import Settings


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_librdkafka_logs_through_our_logger(capfd: pytest.CaptureFixture[str]) -> None:
    kept = Kept()
    KAFKA_LOGGER.addHandler(kept)
    consumer = Consumer(
        Settings(kafka_bootstrap="127.0.0.1:1").kafka_config(**{"group.id": "logs"})
    )
    try:
        deadline = time.monotonic() + 10
        while not kept.records and time.monotonic() < deadline:
            consumer.poll(0.2)  # logs are served from poll
    finally:
        consumer.close()
        KAFKA_LOGGER.removeHandler(kept)
    assert kept.records, "librdkafka said nothing about a broker that refuses connections"
    record = kept.records[0]
    _facility, client, message = record.args  # type: ignore[misc]
    assert record.levelno >= logging.WARNING
    assert "rdkafka#consumer" in client
    assert "127.0.0.1:1" in message
    err = capfd.readouterr().err
    assert "%3|" not in err
    assert "%4|" not in err
