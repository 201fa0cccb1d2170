"""Turn a decoded key and value into the event they are: a change, a tombstone, a heartbeat
or a transaction boundary. Shared by every encoding."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import ValidationError

from cdc.decoding.connect_schema import Mismatch, brief, toasted
from cdc.events.change import (
    Change,
    DomainEvent,
    Event,
    Heartbeat,
    KafkaCoordinates,
    LogicalMessage,
    Op,
    Source,
    Tombstone,
    TransactionBlock,
    TransactionEvent,
    trusted,
)
from cdc.events.values import UNAVAILABLE, as_bytes, is_placeholder
from cdc.tables.connector import AGGREGATE_TYPE_HEADER, EVENT_ID_HEADER, EVENT_TYPE_HEADER

HEARTBEAT_SCHEMA = "io.debezium.connector.common.Heartbeat"
TRANSACTION_SCHEMA = "io.debezium.connector.common.TransactionMetadataValue"
HEARTBEAT_TOPIC_PREFIX = "__debezium-heartbeat"
_OPS = {op.value: op for op in Op}


def table_of_topic(topic: str) -> str:
    """`<prefix>.<schema>.<table>` -> `schema.table` (identifiers we watch hold no dots)."""
    return ".".join(topic.rsplit(".", 2)[-2:])


def build_event(
    value: Any, value_schema: str | None, key: Any, kafka: KafkaCoordinates, *, raw: bool
) -> Event:
    """The event for a value already checked against its schema. `raw`: values came without
    one and may hold TOAST placeholder text still to replace."""
    if value is None:
        return trusted(
            Tombstone, {"table": table_of_topic(kafka.topic), "key": _key(key), "kafka": kafka}
        )
    if not isinstance(value, dict):
        raise Mismatch("", f"expected an object, got {type(value).__name__}")
    if value_schema == HEARTBEAT_SCHEMA or (
        value_schema is None and kafka.topic.startswith(HEARTBEAT_TOPIC_PREFIX)
    ):
        return _validated(Heartbeat, dict(value, kafka=kafka, server_name=_server(key)))
    if "op" not in value and (
        value_schema == TRANSACTION_SCHEMA or (value_schema is None and "status" in value)
    ):
        return _validated(TransactionEvent, dict(value, kafka=kafka))
    return _change(value, key, kafka, raw)


def build_domain_event(value: Any, key: Any, kafka: KafkaCoordinates, *, raw: bool) -> DomainEvent:
    """An Outbox Event Router record: the payload as the value (JSON text, or already parsed
    when the value's schema said it is JSON), the aggregate id as the key, and the event's id,
    type and aggregate type in headers. `raw`: the value came without a schema."""
    if value is None:
        raise Mismatch("", "an outbox record without a payload")
    if isinstance(value, str) and raw:
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise Mismatch("payload", f"not JSON: {exc}") from None
    if key is None or isinstance(key, dict | list | bool):
        raise Mismatch("key", f"expected the aggregate id, got {type(key).__name__}")
    headers = {
        name: _header(kafka, header)
        for name, header in (
            ("id", EVENT_ID_HEADER),
            ("type", EVENT_TYPE_HEADER),
            ("aggregate_type", AGGREGATE_TYPE_HEADER),
        )
    }
    return trusted(
        DomainEvent,
        {**headers, "aggregate_id": str(key), "payload": value, "kafka": kafka},
    )


def _header(kafka: KafkaCoordinates, name: str) -> str:
    raw = kafka.header(name)
    if not raw:
        raise Mismatch(f"headers.{name}", "missing: not an Outbox Event Router record")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise Mismatch(f"headers.{name}", f"invalid UTF-8 at byte {exc.start}") from None


def _change(value: dict[str, Any], key: Any, kafka: KafkaCoordinates, raw: bool) -> Change:
    raw_op = value.get("op")
    op = _OPS.get(raw_op) if isinstance(raw_op, str) else None
    if op is None:
        if raw_op is None:
            raise Mismatch("op", "missing: not a Debezium change event")
        raise Mismatch("op", f"unknown operation {brief(raw_op)}")
    source = _validated(Source, value.get("source"), "source")
    transaction = value.get("transaction")
    message = value.get("message")
    if op is Op.MESSAGE:
        if not isinstance(message, dict):
            raise Mismatch("message", "a message event without its message")
        content = message.get("content")
        message = _validated(
            LogicalMessage,
            {
                "prefix": message.get("prefix"),
                "content": as_bytes(content) if isinstance(content, str) else content,
            },
            "message",
        )
    return trusted(
        Change,
        {
            "op": op,
            "before": _row(value.get("before"), "before", False),
            "after": _row(value.get("after"), "after", raw and toasted(value)),
            "source": source,
            "ts_ms": _int_or_none(value, "ts_ms"),
            "ts_us": _int_or_none(value, "ts_us"),
            "ts_ns": _int_or_none(value, "ts_ns"),
            "transaction": None
            if transaction is None
            else _validated(TransactionBlock, transaction, "transaction"),
            "message": message,
            "key": _key(key),
            "kafka": kafka,
        },
    )


def _row(row: Any, path: str, toast: bool) -> dict[str, Any] | None:
    """`toast`: a raw row (no schema) that may hold TOAST placeholders (see `toasted`); with a
    schema the decoder already turned them into UNAVAILABLE."""
    if row is None:
        return None
    if not isinstance(row, dict):
        raise Mismatch(path, f"expected an object, got {type(row).__name__}")
    if toast:
        for name, column in row.items():
            if is_placeholder(column):
                row[name] = UNAVAILABLE
    return row


def _key(key: Any) -> dict[str, Any] | None:
    if key is None or isinstance(key, dict):
        return key
    raise Mismatch("key", f"expected an object, got {type(key).__name__}")


def _server(key: Any) -> str | None:
    name = key.get("serverName") if isinstance(key, dict) else None
    return name if isinstance(name, str) else None


def _int_or_none(value: dict[str, Any], name: str) -> int | None:
    item = value.get(name)
    if item is None or (isinstance(item, int) and not isinstance(item, bool)):
        return item
    raise Mismatch(name, f"expected an integer, got {type(item).__name__}")


_M = TypeVar("_M", Heartbeat, TransactionEvent, Source, TransactionBlock, LogicalMessage)


def _validated(model: type[_M], data: Any, path: str = "") -> _M:
    try:
        # model_validate without its wrapper: a quarter of the cost of a source block.
        validated: _M = model.__pydantic_validator__.validate_python(data)
        return validated
    except ValidationError as exc:
        first: Any = exc.errors()[0]
        where = ".".join(str(part) for part in (path, *first["loc"]) if part != "")
        raise Mismatch(where, f"{first['msg']} ({exc.error_count()} error(s))") from None
