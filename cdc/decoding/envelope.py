"""Turn a decoded key and value into the event they are: a change, a tombstone, a heartbeat
or a transaction boundary. Shared by every encoding."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import ValidationError

from cdc.decoding.connect_schema import brief, toasted
from cdc.events.change import (
    _UNREAD,
    Change,
    DomainEvent,
    Event,
    Heartbeat,
    KeyReader,
    LogicalMessage,
    Op,
    Tombstone,
    TransactionBlock,
    TransactionEvent,
    trusted,
)
from cdc.events.columns import TOASTED, Columns, Mismatch, Plan
from cdc.events.source import KafkaCoordinates, Source
from cdc.events.values import as_bytes
from cdc.tables.connector import AGGREGATE_TYPE_HEADER, EVENT_ID_HEADER, EVENT_TYPE_HEADER

HEARTBEAT_SCHEMA = "io.debezium.connector.common.Heartbeat"
TRANSACTION_SCHEMA = "io.debezium.connector.common.TransactionMetadataValue"
HEARTBEAT_TOPIC_PREFIX = "__debezium-heartbeat"
_OPS = {op.value: op for op in Op}


def table_of_topic(topic: str) -> str:
    """`<prefix>.<schema>.<table>` -> `schema.table` (identifiers we watch hold no dots)."""
    return ".".join(topic.rsplit(".", 2)[-2:])


def build_event(
    value: Any,
    value_schema: str | None,
    key: bytes | None,
    kafka: KafkaCoordinates,
    keys: KeyReader,
    *,
    raw: bool,
) -> Event:
    """The event for a value already checked against its schema. `raw`: values came without
    one and may hold TOAST placeholder text still to replace. A change's key (`key`, its
    bytes) is read by `keys` when asked for; the other events' at once."""
    if value is None:
        return trusted(
            Tombstone,
            {
                "table": table_of_topic(kafka.topic),
                "key": _key_now(key, kafka, keys),
                "kafka": kafka,
            },
        )
    if not isinstance(value, dict):
        raise Mismatch("", f"expected an object, got {type(value).__name__}")
    if value_schema == HEARTBEAT_SCHEMA or (
        value_schema is None and kafka.topic.startswith(HEARTBEAT_TOPIC_PREFIX)
    ):
        server = _server(_key_now(key, kafka, keys))
        return _validated(Heartbeat, dict(value, kafka=kafka, server_name=server))
    if "op" not in value and (
        value_schema == TRANSACTION_SCHEMA or (value_schema is None and "status" in value)
    ):
        return _validated(TransactionEvent, dict(value, kafka=kafka))
    change = _change(value, kafka, raw)
    if key is not None:
        change._key = _UNREAD
        change._key_raw = key
        change._keys = keys
    return change


def _key_now(key: bytes | None, kafka: KafkaCoordinates, keys: KeyReader) -> Any:
    return None if key is None else keys.read_key(key, kafka)


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


def _change(value: dict[str, Any], kafka: KafkaCoordinates, raw: bool) -> Change:
    raw_op = value.get("op")
    op = _OPS.get(raw_op) if type(raw_op) is str else None
    if op is None:
        if raw_op is None:
            raise Mismatch("op", "missing: not a Debezium change event")
        if type(raw_op) is not str:
            raise Mismatch("op", f"expected a string, got {type(raw_op).__name__}")
        raise Mismatch("op", f"unknown operation {brief(raw_op)}")
    source = Source.check(value.get("source"))
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
    return Change(
        op,
        _row(value.get("before"), "before", kafka, None),
        _row(value.get("after"), "after", kafka, TOASTED if raw and toasted(value) else None),
        source,
        kafka,
        None,
        *_times(value),
        None if transaction is None else _validated(TransactionBlock, transaction, "transaction"),
        message,
    )


def _row(row: Any, path: str, kafka: KafkaCoordinates, plan: Plan | None) -> Columns | None:
    """The row's `Columns` (made by the decoder when the record has a schema); `plan`: for a
    raw row, `TOASTED` where it may hold TOAST placeholders (see `toasted`)."""
    if row is None:
        return None
    if type(row) is Columns:
        row._kafka = kafka
        return row
    if type(row) is not dict:
        raise Mismatch(path, f"expected an object, got {type(row).__name__}")
    return Columns(row, plan, path, kafka)


def _server(key: Any) -> str | None:
    name = key.get("serverName") if isinstance(key, dict) else None
    return name if isinstance(name, str) else None


_TIME = frozenset((int, type(None)))


def _times(value: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """The envelope's ts_ms, ts_us and ts_ns."""
    times = value.get("ts_ms"), value.get("ts_us"), value.get("ts_ns")
    if type(times[0]) in _TIME and type(times[1]) in _TIME and type(times[2]) in _TIME:
        return times
    name, item = next((n, t) for n, t in zip(_TIMES, times, strict=True) if type(t) not in _TIME)
    raise Mismatch(name, f"expected an integer, got {type(item).__name__}")


_TIMES = ("ts_ms", "ts_us", "ts_ns")


_M = TypeVar("_M", Heartbeat, TransactionEvent, TransactionBlock, LogicalMessage)


def _validated(model: type[_M], data: Any, path: str = "") -> _M:
    try:
        # model_validate without its wrapper: a quarter of the cost of a source block.
        validated: _M = model.__pydantic_validator__.validate_python(data)
        return validated
    except ValidationError as exc:
        first: Any = exc.errors()[0]
        where = ".".join(str(part) for part in (path, *first["loc"]) if part != "")
        raise Mismatch(where, f"{first['msg']} ({exc.error_count()} error(s))") from None
