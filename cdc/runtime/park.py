"""Park a record in the dead-letter topic, byte for byte, with why; logged and counted."""

from __future__ import annotations

import structlog
from confluent_kafka import KafkaException, Message

from cdc.runtime.dead_letter import DeadLetterSink, Rejected
from cdc.runtime.held_keys import HeldKeys
from cdc.runtime.metrics import Metrics
from cdc.runtime.outage import persist
from cdc.runtime.records import Wait, coordinates, record_headers
from cdc.runtime.runs import Backoff

log = structlog.get_logger("cdc.consumer")


class Parker:
    """Sends records to the dead-letter topic, from any thread."""

    def __init__(
        self, sink: DeadLetterSink, metrics: Metrics, backoff: Backoff, held: HeldKeys
    ) -> None:
        self.sink = sink
        self.topic = sink.topic
        self.held = held  # each park holds its key (`cdc.runtime.held_keys`)
        self._metrics = metrics
        self._backoff = backoff

    def park(
        self,
        msg: Message,
        reason: str,
        error: str,
        *,
        wait: Wait,
        handler: str = "",
        table: str = "",
        attempts: int = 0,
    ) -> None:
        """Send the record to the dead-letter topic; wait out a broker outage (`Stopping` if
        ``wait`` gives up: the record is then not finished)."""
        topic, partition, offset = coordinates(msg)
        kind, timestamp = msg.timestamp()
        rejected = Rejected(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp if kind else None,
            key=msg.key(),
            value=msg.value(),
            headers=record_headers(msg),
            reason=reason,
            error=error,
            handler=handler,
            table=table,
            attempts=attempts,
        )
        at, parked_at = persist(
            "dead_letter", KafkaException, lambda: self.sink.send(rejected), wait, self._backoff
        )
        if error != "Skipped":  # skipped on purpose: the key's later changes go on
            self.held.parked(handler, topic, rejected.key, at, parked_at, reason)
        log.error(
            "record.dead_lettered",
            topic=topic,
            partition=partition,
            offset=offset,
            table=table,
            handler=handler,
            error=error,
            reason=reason,
            dead_letter_topic=self.topic,
        )
        self._metrics.dead_lettered.labels(table, handler, error).inc()
