"""Column values: Debezium's logical types turned into the Python values psycopg would give.

Each conversion is keyed by the Connect schema name, so the JSON and Avro decoders share it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import re
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, TypeVar

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


class Unrepresentable:
    """A valid PostgreSQL value that the Python type of its column cannot hold, or that Debezium
    could not carry: a BC or post-9999 date or timestamp, `time '24:00:00'`, an interval past
    `timedelta`'s range, a multi-dimensional array. Never a wrong value in its place.

    `pg_type` names the kind of column (`date`, `time`, `timestamp`, `timestamptz`,
    `interval`, `array`); `text` is the value in ISO 8601 (years with a sign beyond 0001..9999,
    counted astronomically: 1 BC is year 0) or None when Debezium sent nothing usable; `raw`
    is what Debezium sent. Row models accept it only where a field is declared
    `T | Unrepresentable`."""

    __slots__ = ("pg_type", "raw", "text")

    def __init__(self, pg_type: str, text: str | None, raw: Any) -> None:
        self.pg_type = pg_type
        self.text = text
        self.raw = raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unrepresentable) and (
            (self.pg_type, self.text, self.raw) == (other.pg_type, other.text, other.raw)
        )

    def __hash__(self) -> int:
        return hash((self.pg_type, self.text, repr(self.raw)))

    def __repr__(self) -> str:
        return f"Unrepresentable({self.pg_type!r}, {self.text!r}, raw={self.raw!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.is_instance_schema(
            cls,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.text if v.text is not None else repr(v.raw)
            ),
        )


# ±infinity: PostgreSQL's infinite dates and timestamps arrive as sentinel numbers. They become
# the bounds of the Python type, as psycopg's documentation suggests for infinite values.
# Debezium 3.6 writes `infinity` dates as PostgreSQL's day count overflowed past the epoch
# shift; the PgJDBC-derived numbers of earlier versions are kept for older topics.
_DAY_US: Final = 86_400_000_000
_EPOCH: Final = dt.datetime(1970, 1, 1)
_EPOCH_DATE: Final = dt.date(1970, 1, 1)
_DATE_INFINITY: Final = {
    -2147472692: dt.date.max,
    -2147472691: dt.date.min,
    -622191234: dt.date.max,
    -625821272: dt.date.min,
}
_MS_INFINITY: Final = {9223372036825200: dt.datetime.max, -9223372036832400: dt.datetime.min}
_US_INFINITY: Final = {
    9223372036825200000: dt.datetime.max,
    -9223372036832400000: dt.datetime.min,
}
_UTC_MAX: Final = dt.datetime.max.replace(tzinfo=dt.UTC)
_UTC_MIN: Final = dt.datetime.min.replace(tzinfo=dt.UTC)
_MIN_DAYS: Final = (dt.date.min - _EPOCH_DATE).days
_PG_MIN_US: Final = -210866803200000000  # 4714-11-24 BC 00:00, PostgreSQL's first timestamp
_MAX_DAYS: Final = (dt.date.max - _EPOCH_DATE).days


def _civil(days: int) -> str:
    """ISO 8601 date of a day count from 1970-01-01 in the proleptic Gregorian calendar, for
    any year (H. Hinnant's days_from_civil inverse)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    sign = "-" if year < 0 else "+" if year > 9999 else ""
    return f"{sign}{abs(year):04d}-{month:02d}-{day:02d}"


def _clock(us: int) -> str:
    seconds, micros = divmod(us, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{hour:02d}:{minute:02d}:{second:02d}" + (f".{micros:06d}" if micros else "")


_T = TypeVar("_T")


def _raw(value: _T | Unrepresentable, raw: int) -> _T | Unrepresentable:
    """`value`, with what Debezium sent as its raw value when it is Unrepresentable."""
    if isinstance(value, Unrepresentable):
        return Unrepresentable(value.pg_type, value.text, raw)
    return value


def to_date(days: int) -> dt.date | Unrepresentable:
    bound = _DATE_INFINITY.get(days)
    if bound is not None:
        return bound
    if _MIN_DAYS <= days <= _MAX_DAYS:
        return _EPOCH_DATE + dt.timedelta(days=days)
    return Unrepresentable("date", _civil(days), days)


def to_time_us(us: int) -> dt.time | Unrepresentable:
    if 0 <= us < _DAY_US:
        return (_EPOCH + dt.timedelta(microseconds=us)).time()
    # `24:00:00`, the one time of day past the last microsecond.
    return Unrepresentable("time", _clock(us), us)


def to_time_ms(ms: int) -> dt.time | Unrepresentable:
    return _raw(to_time_us(ms * 1000), ms)


def to_time_ns(ns: int) -> dt.time | Unrepresentable:
    return _raw(to_time_us(ns // 1000), ns)


def to_zoned_time(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def to_timestamp_us(us: int) -> dt.datetime | Unrepresentable:
    bound = _US_INFINITY.get(us)
    if bound is not None:
        return bound
    days, rest = divmod(us, _DAY_US)
    if _MIN_DAYS <= days <= _MAX_DAYS:
        return _EPOCH + dt.timedelta(microseconds=us)
    if us < _PG_MIN_US:
        # Before PostgreSQL's first day: Debezium's 64-bit count overflowed on a timestamp
        # near PostgreSQL's last one. The value is lost.
        return Unrepresentable("timestamp", None, us)
    return Unrepresentable("timestamp", f"{_civil(days)}T{_clock(rest)}", us)


def to_timestamp_ms(ms: int) -> dt.datetime | Unrepresentable:
    bound = _MS_INFINITY.get(ms)
    if bound is not None:
        return bound
    value = to_timestamp_us(ms * 1000)
    return (
        Unrepresentable("timestamp", value.text, ms)
        if isinstance(value, Unrepresentable)
        else value
    )


def to_timestamp_ns(ns: int) -> dt.datetime | Unrepresentable:
    value = to_timestamp_us(ns // 1000)
    return (
        Unrepresentable("timestamp", value.text, ns)
        if isinstance(value, Unrepresentable)
        else value
    )


# Debezium writes a year past 9999 with a `+` and one before year 1 with a `-` (ISO 8601
# expanded years), which `datetime.fromisoformat` does not read.
_EXPANDED_YEAR = re.compile(r"[+-]\d{4,}-")


def to_zoned_timestamp(text: str) -> dt.datetime | Unrepresentable:
    if text == "infinity":
        return _UTC_MAX
    if text == "-infinity":
        return _UTC_MIN
    if _EXPANDED_YEAR.match(text) or text.startswith("0000-"):
        return Unrepresentable("timestamptz", text, text)
    return dt.datetime.fromisoformat(text)


def to_duration_us(us: int) -> dt.timedelta:
    return dt.timedelta(microseconds=us)


_ISO_INTERVAL = re.compile(
    r"P(?:(?P<y>-?\d+)Y)?(?:(?P<mo>-?\d+)M)?(?:(?P<d>-?\d+)D)?"
    r"(?:T(?:(?P<h>-?\d+)H)?(?:(?P<mi>-?\d+)M)?(?:(?P<s>-?\d+(?:\.\d+)?)S)?)?"
)


def to_interval(text: str) -> dt.timedelta | Unrepresentable:
    """An ISO 8601 interval (`interval.handling.mode=string`), years and months counted the
    way psycopg counts them: 365 and 30 days."""
    match = _ISO_INTERVAL.fullmatch(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 interval: {text!r}")
    part = {k: v or "0" for k, v in match.groupdict().items()}
    seconds = Decimal(part["s"])
    try:
        return dt.timedelta(
            days=int(part["y"]) * 365 + int(part["mo"]) * 30 + int(part["d"]),
            hours=int(part["h"]),
            minutes=int(part["mi"]),
            microseconds=int(seconds * 1_000_000),
        )
    except OverflowError:  # past ±999,999,999 days
        return Unrepresentable("interval", text, text)


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
