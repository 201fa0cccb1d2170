"""The captured corpus as Python values: records as Kafka would hand them over, and the rows
psycopg read back, untagged."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from cdc.decoding import Decoder, JsonDecoder, StaticSchemas
from cdc.decoding.avro_format import AvroDecoder
from cdc.events import Change, Event, KafkaCoordinates, Op

HERE = Path(__file__).parent
ENCODINGS = ("json", "json-noschema", "avro")
DATA, HEARTBEAT, MESSAGE, TX = (
    "corpus.corpus.all_types",
    "__debezium-heartbeat.corpus",
    "corpus.message",
    "corpus.transaction",
)
OUTBOX = "corpus_outbox."  # the outbox topics: corpus_outbox.<aggregate type>


class Record(NamedTuple):
    key: bytes | None
    value: bytes | None
    kafka: KafkaCoordinates


def _raw(b64: str | None) -> bytes | None:
    return None if b64 is None else base64.b64decode(b64)


@cache
def records(encoding: str) -> tuple[Record, ...]:
    out = []
    for line in (HERE / encoding / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        kafka = KafkaCoordinates(
            topic=r["topic"],
            partition=r["partition"],
            offset=r["offset"],
            timestamp_ms=r["timestamp"],
            headers=tuple((name, _raw(value)) for name, value in r["headers"]),
        )
        out.append(Record(_raw(r["key"]), _raw(r["value"]), kafka))
    return tuple(out)


def avro_schemas() -> dict[str, str]:
    schemas: dict[str, str] = json.loads((HERE / "avro" / "schemas.json").read_text())
    return schemas


def decoder(encoding: str) -> Decoder:
    if encoding == "avro":
        return AvroDecoder(StaticSchemas({int(k): v for k, v in avro_schemas().items()}))
    return JsonDecoder(schemas=encoding == "json")


class Line(BaseModel):
    sku: str
    qty: int


class OrderPlaced(BaseModel):
    """The payload of the corpus's ``order-placed`` event (see capture.EVENTS)."""

    order_id: int
    total: str
    lines: list[Line]


def decode(dec: Decoder, r: Record) -> Event:
    """A corpus record decoded as the consumer would: outbox topics as domain events."""
    return dec.decode(r.key, r.value, r.kafka, outbox=r.kafka.topic.startswith(OUTBOX))


def first_insert() -> Change:
    """The corpus's first insert, decoded from JSON with schemas."""
    dec = decoder("json")
    for r in records("json"):
        event = dec.decode(r.key, r.value, r.kafka)
        if isinstance(event, Change) and event.op is Op.CREATE:
            return event
    raise LookupError("the corpus has no insert")


def expected() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HERE / "expected.json").read_text())
    return data


# Columns whose infinite values map to the bounds of their Python type.
_BOUNDS = {
    "c_date": (dt.date.min, dt.date.max),
    "c_timestamp_ms": (dt.datetime.min, dt.datetime.max),
    "c_timestamp_us": (dt.datetime.min, dt.datetime.max),
    "c_timestamptz": (
        dt.datetime.min.replace(tzinfo=dt.UTC),
        dt.datetime.max.replace(tzinfo=dt.UTC),
    ),
}


def untag(column: str, value: Any) -> Any:
    """The Python value psycopg gave, rebuilt from its tagged JSON form."""
    if isinstance(value, list):
        return [untag(column, v) for v in value]
    if not isinstance(value, dict):
        return value
    ((tag, body),) = value.items()
    builders: dict[str, Any] = {
        "$float": float,
        "$decimal": Decimal,
        "$datetime": dt.datetime.fromisoformat,
        "$date": dt.date.fromisoformat,
        "$time": dt.time.fromisoformat,
        "$timedelta": lambda parts: dt.timedelta(*parts),
        "$bytes": bytes.fromhex,
        "$uuid": uuid.UUID,
        "$json": lambda v: v,
    }
    if tag == "$infinity":
        low, high = _BOUNDS[column]
        return high if body == "infinity" else low
    return builders[tag](body)


def expected_row(tagged: dict[str, Any]) -> dict[str, Any]:
    return {column: untag(column, value) for column, value in tagged.items()}
