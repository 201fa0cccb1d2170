"""A first consumer: subscribe to the watched tables' topics and print each change, until
the decoding and routing runtime takes over ``cdc run``."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message

from cdc.settings import Settings
from cdc.tables.config import WatchedTables
from cdc.tables.connector import data_topic


def topics(watched: WatchedTables) -> list[str]:
    return [data_topic(watched, t) for t in watched.table_names()]


def describe(msg: Message) -> dict[str, Any]:
    """One line per record: where it came from and what it says."""
    out: dict[str, Any] = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
    }
    key, value = msg.key(), msg.value()
    out["key"] = _unwrap(_json(key))
    if value is None:
        out["op"] = "tombstone"
        return out
    payload = _unwrap(_json(value))
    if isinstance(payload, dict):
        out |= {k: payload.get(k) for k in ("op", "before", "after")}
        source = payload.get("source") or {}
        out["table"] = f"{source.get('schema')}.{source.get('table')}"
        out["lsn"] = source.get("lsn")
    else:
        out["value"] = payload
    return out


def _unwrap(body: Any) -> Any:
    # JsonConverter with schemas.enable=true wraps every key and value as {schema, payload}.
    if isinstance(body, dict) and body.keys() == {"schema", "payload"}:
        return body["payload"]
    return body


def _json(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"undecoded_bytes": len(raw)}


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
            print(json.dumps(describe(msg), default=str), flush=True)
    finally:
        consumer.close()
