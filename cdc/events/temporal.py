"""Dates, times, timestamps and intervals as Debezium encodes them (`time.precision.mode=
adaptive`, `interval.handling.mode=string`), turned into the values psycopg gives, or an
`Unrepresentable` where Python's types cannot hold them."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Final, TypeVar

from cdc.events.fallback import Unrepresentable

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
