"""Column values: Debezium's logical types turned into the Python values psycopg would give.

Each conversion is keyed by the Connect schema name, so the JSON and Avro decoders share it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

PLACEHOLDER: Final = "__debezium_unavailable_value"
_PLACEHOLDER_BYTES: Final = PLACEHOLDER.encode()


class Unavailable:
    """An unchanged TOASTed column: PostgreSQL did not send its value (REPLICA IDENTITY DEFAULT).

    There is one instance, `UNAVAILABLE`; test with `value is UNAVAILABLE`. Row models accept it
    only where a field is declared `T | Unavailable`.
    """

    _instance: Unavailable | None = None

    def __new__(cls) -> Unavailable:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNAVAILABLE"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNAVAILABLE"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.is_instance_schema(
            cls, serialization=core_schema.plain_serializer_function_ser_schema(lambda _: None)
        )


UNAVAILABLE: Final = Unavailable()


def _java_name_uuid(data: bytes) -> str:
    """`java.util.UUID.nameUUIDFromBytes`: what Debezium puts in an unchanged uuid[] column."""
    return str(uuid.UUID(bytes=hashlib.md5(data).digest(), version=3))  # noqa: S324


# Debezium adapts the placeholder to the column's type (UnchangedToastedPlaceholder).
_PLACEHOLDER_FORMS: Final[list[Any]] = [
    PLACEHOLDER,
    _PLACEHOLDER_BYTES,
    base64.b64encode(_PLACEHOLDER_BYTES).decode(),  # bytea in JSON without a schema
    [PLACEHOLDER],
    [_PLACEHOLDER_BYTES],
    [base64.b64encode(_PLACEHOLDER_BYTES).decode()],
    list(_PLACEHOLDER_BYTES),  # int[] and bigint[]
    {PLACEHOLDER: PLACEHOLDER},  # hstore
    [_java_name_uuid(_PLACEHOLDER_BYTES)],
]


_PLACEHOLDER_B64: Final = _PLACEHOLDER_FORMS[2]
# The placeholder's forms as text (a string column, or base64 of a bytea one).
PLACEHOLDER_TEXT: Final = (PLACEHOLDER, _PLACEHOLDER_B64)


def is_placeholder(value: Any) -> bool:
    """True when a raw column value is Debezium's stand-in for an unchanged TOAST value."""
    kind = type(value)  # exact types: this runs for every column of every raw row
    if kind is str:
        return value in PLACEHOLDER_TEXT
    if kind is bytes:
        return bool(value == _PLACEHOLDER_BYTES)
    if kind is list or kind is dict:
        return value in _PLACEHOLDER_FORMS
    return False


# ±infinity: PostgreSQL's infinite dates and timestamps arrive as sentinel numbers derived from
# PgJDBC's DATE_POSITIVE_INFINITY / DATE_NEGATIVE_INFINITY. They become the bounds of the
# Python type, as psycopg's documentation suggests for infinite values.
_DAY_US: Final = 86_400_000_000
_EPOCH: Final = dt.datetime(1970, 1, 1)
_EPOCH_DATE: Final = dt.date(1970, 1, 1)
_DATE_INFINITY: Final = {-622191234: dt.date.max, -625821272: dt.date.min}
_MS_INFINITY: Final = {9223372036825200: dt.datetime.max, -9223372036832400: dt.datetime.min}
_US_INFINITY: Final = {
    9223372036825200000: dt.datetime.max,
    -9223372036832400000: dt.datetime.min,
}
_UTC_MAX: Final = dt.datetime.max.replace(tzinfo=dt.UTC)
_UTC_MIN: Final = dt.datetime.min.replace(tzinfo=dt.UTC)


def to_date(days: int) -> dt.date:
    bound = _DATE_INFINITY.get(days)
    return bound if bound is not None else _EPOCH_DATE + dt.timedelta(days=days)


def to_time_ms(ms: int) -> dt.time:
    return (_EPOCH + dt.timedelta(milliseconds=ms)).time()


def to_time_us(us: int) -> dt.time:
    return (_EPOCH + dt.timedelta(microseconds=us)).time()


def to_time_ns(ns: int) -> dt.time:
    return to_time_us(ns // 1000)


def to_zoned_time(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def to_timestamp_ms(ms: int) -> dt.datetime:
    bound = _MS_INFINITY.get(ms)
    return bound if bound is not None else _EPOCH + dt.timedelta(milliseconds=ms)


def to_timestamp_us(us: int) -> dt.datetime:
    bound = _US_INFINITY.get(us)
    return bound if bound is not None else _EPOCH + dt.timedelta(microseconds=us)


def to_timestamp_ns(ns: int) -> dt.datetime:
    return to_timestamp_us(ns // 1000)


def to_zoned_timestamp(text: str) -> dt.datetime:
    if text == "infinity":
        return _UTC_MAX
    if text == "-infinity":
        return _UTC_MIN
    return dt.datetime.fromisoformat(text)


def to_duration_us(us: int) -> dt.timedelta:
    return dt.timedelta(microseconds=us)


_ISO_INTERVAL = re.compile(
    r"P(?:(?P<y>-?\d+)Y)?(?:(?P<mo>-?\d+)M)?(?:(?P<d>-?\d+)D)?"
    r"(?:T(?:(?P<h>-?\d+)H)?(?:(?P<mi>-?\d+)M)?(?:(?P<s>-?\d+(?:\.\d+)?)S)?)?"
)


def to_interval(text: str) -> dt.timedelta:
    """An ISO 8601 interval (`interval.handling.mode=string`), years and months counted the
    way psycopg counts them: 365 and 30 days."""
    match = _ISO_INTERVAL.fullmatch(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 interval: {text!r}")
    part = {k: v or "0" for k, v in match.groupdict().items()}
    seconds = Decimal(part["s"])
    return dt.timedelta(
        days=int(part["y"]) * 365 + int(part["mo"]) * 30 + int(part["d"]),
        hours=int(part["h"]),
        minutes=int(part["mi"]),
        microseconds=int(seconds * 1_000_000),
    )


def unscaled(raw: bytes, scale: int) -> Decimal:
    """Connect's decimal: big-endian two's-complement unscaled bytes."""
    return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale)


def as_bytes(value: bytes | str) -> bytes:
    """bytes in Avro, base64 text in JSON."""
    if isinstance(value, bytes):
        return value
    return base64.b64decode(value, validate=True)


def to_decimal(value: bytes | str | Decimal, scale: int) -> Decimal:
    if isinstance(value, Decimal):  # fastavro already read the decimal logical type
        return value
    return unscaled(as_bytes(value), scale)


def to_variable_decimal(value: dict[str, Any]) -> Decimal:
    return unscaled(as_bytes(value["value"]), int(value["scale"]))


def to_uuid(text: str) -> uuid.UUID:
    return uuid.UUID(text)


def to_json(text: str) -> Any:
    return json.loads(text)


Convert = Callable[[Any], Any]

# Connect logical type name -> conversion of a non-null, non-placeholder value. Decimal needs
# the scale from the schema's parameters, so it is built by `logical_converter`.
LOGICAL: Final[dict[str, Convert]] = {
    "io.debezium.data.VariableScaleDecimal": to_variable_decimal,
    "io.debezium.time.Date": to_date,
    "org.apache.kafka.connect.data.Date": to_date,
    "io.debezium.time.Time": to_time_ms,
    "io.debezium.time.MicroTime": to_time_us,
    "io.debezium.time.NanoTime": to_time_ns,
    "io.debezium.time.ZonedTime": to_zoned_time,
    "io.debezium.time.Timestamp": to_timestamp_ms,
    "io.debezium.time.MicroTimestamp": to_timestamp_us,
    "io.debezium.time.NanoTimestamp": to_timestamp_ns,
    "io.debezium.time.ZonedTimestamp": to_zoned_timestamp,
    "io.debezium.time.MicroDuration": to_duration_us,
    "io.debezium.time.Interval": to_interval,
    "io.debezium.data.Json": to_json,
    "io.debezium.data.Uuid": to_uuid,
}
DECIMAL: Final = "org.apache.kafka.connect.data.Decimal"


def logical_converter(name: str | None, parameters: dict[str, str] | None) -> Convert | None:
    """The conversion for a Connect logical type, or None when the raw value is already right
    (plain types, `Enum`, `Xml`, unknown names)."""
    if name == DECIMAL:
        scale = int((parameters or {}).get("scale", "0"))
        return lambda value: to_decimal(value, scale)
    if name is None:
        return None
    return LOGICAL.get(name)
