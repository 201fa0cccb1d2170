"""Column values: Debezium's logical types turned into the Python values psycopg would give.

Each conversion is keyed by the Connect schema name, so the JSON and Avro decoders share it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from cdc.events.temporal import (
    to_date,
    to_duration_us,
    to_interval,
    to_time_ms,
    to_time_ns,
    to_time_us,
    to_timestamp_ms,
    to_timestamp_ns,
    to_timestamp_us,
    to_zoned_time,
    to_zoned_timestamp,
)

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


def unscaled(raw: bytes, scale: int) -> Decimal:
    """Connect's decimal: big-endian two's-complement unscaled bytes. Built from text, which
    is exact at any precision (arithmetic would round to the context's 28 digits)."""
    return Decimal(f"{int.from_bytes(raw, 'big', signed=True)}E{-scale}")


# `decimal.handling.mode=string`: the exact digits, and PostgreSQL's special values by name.
_DECIMAL_SPECIAL: Final = {
    "NAN": Decimal("NaN"),
    "POSITIVE_INFINITY": Decimal("Infinity"),
    "NEGATIVE_INFINITY": Decimal("-Infinity"),
}


def to_decimal_text(text: str) -> Decimal:
    special = _DECIMAL_SPECIAL.get(text)
    if special is not None:
        return special
    try:
        value = Decimal(text)
    except ArithmeticError:  # decimal.InvalidOperation
        value = Decimal("NaN")
    if not value.is_finite():  # only the names above stand for NaN and the infinities
        raise ValueError(f"not a decimal: {text[:60]!r}")
    return value


def _decimal_texts(items: list[str | None]) -> list[Decimal | None]:
    return [None if item is None else to_decimal_text(item) for item in items]


# JsonConverter writes a float's NaN and infinities as these strings.
_FLOAT_SPECIAL: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def to_float(value: float | int | str) -> float:
    if isinstance(value, str):
        special = _FLOAT_SPECIAL.get(value)
        if special is None:
            raise ValueError(f"not a number: {value!r}")
        return special
    return float(value)


def shortest_float32(value: float) -> float:
    """A `real` read from Avro's 32-bit float, as PostgreSQL and JSON write it: the shortest
    decimal that is the same 32-bit float (3.4e38, not 3.3999999521443642e38)."""
    if not math.isfinite(value) or value == 0:
        return value
    single = _FLOAT32.unpack(_FLOAT32.pack(value))[0]
    for digits in range(6, 10):
        candidate = float(f"{single:.{digits}g}")
        if _FLOAT32.unpack(_FLOAT32.pack(candidate))[0] == single:
            return candidate
    return value


_FLOAT32: Final = struct.Struct("<f")


def as_bytes(value: bytes | str) -> bytes:
    """bytes in Avro, base64 text in JSON."""
    if isinstance(value, bytes):
        return value
    return base64.b64decode(value, validate=True)


def to_decimal(value: bytes | str | Decimal, scale: int) -> Decimal:
    if isinstance(value, Decimal):  # fastavro already read the decimal logical type
        return value
    return unscaled(as_bytes(value), scale)


# What `datatype.propagate.source.type` adds to the schema of a numeric column (see
# tables/connector.py).
SOURCE_TYPE: Final = "__debezium.source.column.type"
# Text-mode numerics: nothing but the source type tells them from text.
_DECIMAL_TEXT_TYPES: Final = {"NUMERIC", "DECIMAL", "MONEY"}


def to_variable_decimal(value: dict[str, Any]) -> Decimal:
    return unscaled(as_bytes(value["value"]), int(value["scale"]))


def to_uuid(text: str) -> uuid.UUID:
    return uuid.UUID(text)


def to_json(text: str) -> Any:
    return json.loads(text)


def lost_rows(items: list[Any]) -> bool:
    """A multi-dimensional text array: Debezium sends each row as a Java object's name
    (`[Ljava.lang.String;@1b2c3d`), its contents lost."""
    first = items[0] if items else None
    return (
        isinstance(first, str)
        and first.startswith("[L")
        and _JAVA_ARRAY.fullmatch(first) is not None
    )


_JAVA_ARRAY = re.compile(r"\[L[\w.$]+;@[0-9a-f]+")


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


def logical_converter(
    name: str | None, parameters: dict[str, str] | None, kind: str | None = None
) -> Convert | None:
    """The conversion for a Connect logical type, or None when the raw value is already right
    (plain types, `Enum`, `Xml`, unknown names). `kind`, the Connect type, and the source
    column type in `parameters` identify the text-mode numerics, which have no logical name."""
    if name == DECIMAL:
        scale = int((parameters or {}).get("scale", "0"))
        return lambda value: to_decimal(value, scale)
    if name is None:
        source = (parameters or {}).get(SOURCE_TYPE)
        if kind == "string" and source in _DECIMAL_TEXT_TYPES:
            return to_decimal_text
        if kind == "array" and source is not None and source[1:] in _DECIMAL_TEXT_TYPES:
            return _decimal_texts
        return None
    return LOGICAL.get(name)
