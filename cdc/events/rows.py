"""Typed rows: a handler's pydantic model of a table's `before` / `after`.

With a schema (JSON with schemas, Avro) the decoder already produced Python values and the
model just checks them. Without one (`json-noschema`) the values are Debezium's raw encodings
and the model's field types say what they mean. Where the raw form is ambiguous, the field says
how to read it: `Annotated[datetime, MICROS]` for a `timestamp` column (`MILLIS` for
`timestamp(0..3)`), `Annotated[time, MICROS]` likewise; `Annotated[Decimal, Scale(2)]` reads
the binary form of `numeric(p, 2)` in topics written with `decimal.handling.mode=precise`
(today's connector config sends numerics as text). An unchanged TOASTed column is
`UNAVAILABLE`, and a value Python cannot hold `Unrepresentable`; only fields declared
`T | Unavailable` or `T | Unrepresentable` accept them.
"""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from cdc.events import temporal, values
from cdc.events.fallback import Unrepresentable
from cdc.events.values import UNAVAILABLE, lost_rows


@dataclass(frozen=True)
class TimeUnit:
    """How a raw integer time or timestamp counts: `MILLIS` or `MICROS`."""

    name: str


MILLIS = TimeUnit("milliseconds")
MICROS = TimeUnit("microseconds")


@dataclass(frozen=True)
class Scale:
    """The scale of a `numeric(p, s)` column, needed to read its raw bytes."""

    digits: int


_Convert = Callable[[Any], Any]


def _walk(annotation: Any, accepts: set[Any], metadata: list[Any]) -> None:
    """Collect the plain types a field accepts and its Annotated metadata, looking through
    Optional, unions and Annotated."""
    if hasattr(annotation, "__metadata__"):  # Annotated[T, ...]
        metadata.extend(annotation.__metadata__)
        _walk(annotation.__origin__, accepts, metadata)
        return
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            _walk(arg, accepts, metadata)
        return
    accepts.add(origin or annotation)


def _needs(field: str, what: str) -> _Convert:
    def fail(value: Any) -> Any:
        raise ValueError(f"{field}: the raw value {value!r} needs {what}")

    return fail


def _by_raw_type(by_type: dict[type, _Convert]) -> _Convert:
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            return value
        for raw_type, raw_convert in by_type.items():
            if isinstance(value, raw_type):
                return raw_convert(value)
        return value

    return convert


def _plan(name: str, annotation: Any, metadata: list[Any]) -> _Convert | None:
    """How to read a raw value of this field, or None when pydantic reads it right."""
    accepts: set[Any] = set()
    metadata = list(metadata)
    _walk(annotation, accepts, metadata)
    unit = next((m for m in metadata if isinstance(m, TimeUnit)), None)
    scale = next((m for m in metadata if isinstance(m, Scale)), None)
    unit_hint = f"its unit: Annotated[..., MICROS] or Annotated[..., MILLIS] on {name}"
    if dt.datetime in accepts:
        timestamp = {MILLIS: temporal.to_timestamp_ms, MICROS: temporal.to_timestamp_us}
        return _by_raw_type(
            {
                int: timestamp[unit] if unit else _needs(name, unit_hint),
                str: temporal.to_zoned_timestamp,
            }
        )
    if dt.date in accepts:
        return _by_raw_type({int: temporal.to_date})
    if dt.time in accepts:
        time = {MILLIS: temporal.to_time_ms, MICROS: temporal.to_time_us}
        return _by_raw_type(
            {int: time[unit] if unit else _needs(name, unit_hint), str: temporal.to_zoned_time}
        )
    if dt.timedelta in accepts:
        return _by_raw_type({int: temporal.to_duration_us, str: temporal.to_interval})
    if Decimal in accepts:
        binary = (
            (lambda v: values.to_decimal(v, scale.digits))
            if scale
            else _needs(name, f"its scale: Annotated[Decimal, Scale(n)] on {name}")
        )
        return _by_raw_type({dict: values.to_variable_decimal, str: _decimal_text_or(binary)})
    if bytes in accepts:
        return _by_raw_type({str: values.as_bytes})
    if list in accepts:
        # A multi-dimensional text array: Debezium sends its rows as Java object names.
        text: _Convert = (lambda v: v) if str in accepts else json.loads
        return _by_raw_type({list: _lost_rows_unrepresentable, str: text})
    if dict in accepts and str not in accepts:
        return _by_raw_type({str: json.loads})
    return None


def _lost_rows_unrepresentable(value: list[Any]) -> Any:
    return Unrepresentable("array", None, value) if lost_rows(value) else value


def _decimal_text_or(binary: _Convert) -> _Convert:
    """A numeric's exact text (`decimal.handling.mode=string`), or else the base64 binary form
    connectors wrote with `precise` (read with the field's `Scale`)."""

    def convert(value: str) -> Any:
        try:
            return values.to_decimal_text(value)
        except ValueError:  # not a number's text
            return binary(value)

    return convert


class Row(BaseModel):
    """Base class of row models. Subclass it and declare the columns a handler reads."""

    # NaN and ±Infinity are valid numerics and floats in PostgreSQL.
    model_config = ConfigDict(
        frozen=True, extra="ignore", arbitrary_types_allowed=True, allow_inf_nan=True
    )
    __cdc_plan__: ClassVar[dict[str, _Convert]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        plan = {}
        for name, field in cls.model_fields.items():
            convert = _plan(name, field.annotation, field.metadata)
            if convert is not None:
                plan[field.alias or name] = convert
        cls.__cdc_plan__ = plan

    @model_validator(mode="before")
    @classmethod
    def _from_debezium(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not isinstance(data, dict):
            data = dict(data.items())  # a change's Columns: their values as read
        if not isinstance(data, dict):
            return data
        plan = cls.__cdc_plan__
        out = {}
        for name, value in data.items():
            if value is None or value is UNAVAILABLE:
                out[name] = value
            else:
                convert = plan.get(name)
                if convert is None:
                    out[name] = value
                    continue
                try:
                    out[name] = convert(value)
                except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
                    # pydantic reports a ValueError as a validation error; the rest would
                    # escape it unnamed.
                    raise ValueError(f"{name}: {type(exc).__name__}: {exc}") from None
        return out
