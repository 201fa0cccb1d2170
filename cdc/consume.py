"""A first consumer: subscribe to the watched tables' topics, decode each record and print
it, until the routing runtime takes over ``cdc run``."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

from confluent_kafka import Consumer, KafkaError

from cdc.decoding import decoder_for
from cdc.errors import DecodeError
from cdc.events import Change, Event, Tombstone
from cdc.settings import Settings
from cdc.tables.config import WatchedTables
from cdc.tables.connector import data_topic


def topics(watched: WatchedTables) -> list[str]:
    return [data_topic(watched, t) for t in watched.table_names()]


def describe(event: Event) -> dict[str, Any]:
    """One line per record: where it came from and what it says."""
    kafka = event.kafka
    out: dict[str, Any] = {
        "topic": kafka.topic,
        "partition": kafka.partition,
        "offset": kafka.offset,
        "kind": event.kind.value,
        "table": event.table,
    }
    if isinstance(event, Tombstone):
        return out | {"op": "tombstone", "key": event.key}
    if isinstance(event, Change):
        return out | {
            "op": event.op.value,
            "key": event.key,
            "before": event.before,
            "after": event.after,
            "lsn": event.source.lsn,
        }
    return out | event.model_dump(exclude={"kafka"})


def print_changes(watched: WatchedTables, settings: Settings, group: str = "cdc") -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            # Topics appear when Debezium first writes to them; notice them quickly.
            "topic.metadata.refresh.interval.ms": 5000,
        }
    )
    consumer.subscribe(topics(watched))
    decoder = decoder_for(watched.connector.encoding, settings.registry_url)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    print(json.dumps({"error": str(err)}), file=sys.stderr, flush=True)
                continue
            try:
                event = decoder.decode_message(msg)
            except DecodeError as exc:
                print(json.dumps({"error": str(exc)}), file=sys.stderr, flush=True)
                continue
            print(json.dumps(describe(event), default=str), flush=True)
    finally:
        consumer.close()
