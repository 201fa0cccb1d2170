"""Debezium records in the Confluent Avro wire format: magic byte 0, a 4-byte big-endian
schema id, then Avro binary. Read with fastavro; schemas come from a `SchemaSource`."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from decimal import Decimal
from typing import Any

import fastavro

from cdc.decoding.base import Decoder
from cdc.decoding.connect_schema import Convert, guarded, is_envelope, toast_aware, toasted
from cdc.decoding.registry import NotAvro, SchemaSource, UnknownSchema
from cdc.events.columns import Columns, Mismatch, Plan
from cdc.events.fallback import Unrepresentable
from cdc.events.values import (
    PLACEHOLDER_TEXT,
    UNAVAILABLE,
    logical_converter,
    lost_rows,
    shortest_float32,
)

_PRIMITIVE = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class AvroDecoder(Decoder):
    def __init__(self, schemas: SchemaSource) -> None:
        self._schemas = schemas
        self._readers: dict[int, tuple[Any, Convert, str | None]] = {}

    def read(self, raw: bytes) -> tuple[Any, str | None]:
        if len(raw) < 5:
            raise Mismatch("", f"{len(raw)} bytes: too short for the Avro wire format")
        if raw[0] != 0:
            looks = " (JSON text?)" if raw[:1] in (b"{", b"[", b'"') else ""
            raise Mismatch("", f"wrong magic byte 0x{raw[0]:02x}: not the Avro wire format{looks}")
        schema_id = int.from_bytes(raw[1:5], "big")
        reader = self._readers.get(schema_id) or self._reader(schema_id)
        parsed, convert, name = reader
        buffer = io.BytesIO(raw)
        buffer.seek(5)
        try:
            data = fastavro.schemaless_reader(buffer, parsed, None)
        except (EOFError, StopIteration):
            raise Mismatch("", f"truncated Avro data (schema {schema_id})") from None
        except UnicodeDecodeError as exc:
            raise Mismatch(
                "", f"invalid UTF-8 in an Avro string at byte {exc.start} (schema {schema_id})"
            ) from None
        except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
            if buffer.tell() >= len(raw):  # it ran out of bytes mid-value
                raise Mismatch("", f"truncated Avro data (schema {schema_id})") from None
            # fastavro reading bytes that are not a record of this schema: a union branch out
            # of range, a negative length, an enum symbol that does not exist...
            raise Mismatch(
                "", f"not a record of schema {schema_id}: {type(exc).__name__}: {exc}"
            ) from None
        if buffer.tell() != len(raw):
            raise Mismatch("", f"{len(raw) - buffer.tell()} bytes left after the Avro record")
        return convert(data), name

    def _reader(self, schema_id: int) -> tuple[Any, Convert, str | None]:
        try:
            schema = self._schemas.schema(schema_id)
        except NotAvro as exc:
            raise Mismatch("", f"schema id {schema_id} is not an Avro schema: {exc}") from None
        except UnknownSchema as exc:
            raise Mismatch("", f"unknown schema id {schema_id}: {exc}") from None
        try:
            parsed = fastavro.parse_schema(schema)
        except Exception as exc:  # fastavro raises a zoo of types for a schema it refuses
            raise Mismatch(
                "", f"schema id {schema_id} is not an Avro schema: {type(exc).__name__}: {exc}"
            ) from None
        name = None
        if isinstance(schema, dict):
            name = schema.get("connect.name") or _fullname(schema, "")
        reader = (parsed, compile_avro(schema), name)
        self._readers[schema_id] = reader
        return reader


def _fullname(schema: dict[str, Any], namespace: str) -> str:
    name = str(schema.get("name", ""))
    space = schema.get("namespace", namespace)
    return name if "." in name or not space else f"{space}.{name}"


def compile_avro(schema: Any) -> Convert:
    """A converter of what fastavro returns for `schema`: Connect logical types (named in
    `connect.name`) become Python values; in a change's `after`, where `toasted` says it may,
    TOAST placeholders become UNAVAILABLE. Every converter passes None through, so optional
    unions need no wrapper of their own."""
    return _Compiler().compile(schema, "", toast=False) or (lambda value: value)


class _Compiler:
    """One schema's converters. Named types are compiled once per TOAST reading: Debezium
    defines the row record in `before` and refers to it by name in `after`."""

    def __init__(self) -> None:
        self.named: dict[tuple[str, bool], Convert | None] = {}
        self.defined: dict[str, tuple[dict[str, Any], str]] = {}  # name: (schema, namespace)

    def compile(self, schema: Any, namespace: str, toast: bool) -> Convert | None:
        """None when values need no conversion (the common case, kept cheap)."""
        if isinstance(schema, str):
            if schema in _PRIMITIVE:
                return _primitive(schema, toast)
            full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
            for name in (full, schema):
                if (name, toast) in self.named:
                    return self.named[(name, toast)]
                if name in self.defined:  # defined with the other TOAST reading only
                    defined, space = self.defined[name]
                    return self.compile(defined, space, toast)
            return None
        if isinstance(schema, list):
            others = [b for b in schema if b != "null"]
            if len(others) != 1:
                return None  # Debezium writes only optional unions: [null, T] or [T, null]
            return self.compile(others[0], namespace, toast)  # converters pass None through
        kind = schema.get("type")
        if kind == "record":
            return self._record(schema, namespace, toast)
        if kind == "array":
            items = self.compile(schema["items"], namespace, toast)
            array = _array(items, _is_text(schema["items"]))
            numbers = logical_converter(None, schema.get("connect.parameters"), kind)
            if numbers is not None:
                array = guarded(numbers) if array is None else _then(array, numbers)
            return _toast(array, toast)
        if kind == "map":
            return _toast(_map(self.compile(schema["values"], namespace, toast)), toast)
        if kind in ("enum", "fixed"):
            self.named[(_fullname(schema, namespace), toast)] = None
            self.defined[_fullname(schema, namespace)] = (schema, namespace)
            return None
        base = self.compile(kind, namespace, toast) if isinstance(kind, str) else None
        logical = logical_converter(
            schema.get("connect.name"), schema.get("connect.parameters"), kind
        )
        if logical is None:
            return base
        if kind in ("string", "bytes"):
            return _toast(guarded(logical), toast)
        return guarded(logical)

    def _record(self, schema: dict[str, Any], namespace: str, toast: bool) -> Convert:
        full = _fullname(schema, namespace)
        self.defined[full] = (schema, namespace)
        space = full.rpartition(".")[0]
        if is_envelope(schema):
            fields = self._fields(schema, space, toast)  # defines the row record
            convert = self._envelope(schema, space, fields)
        else:
            convert = _fields(self._fields(schema, space, toast))
        logical = logical_converter(schema.get("connect.name"), schema.get("connect.parameters"))
        if logical is not None:
            record, to_python = convert, logical
            convert = guarded(lambda value: to_python(record(value)))
        self.named[(full, toast)] = convert
        return convert

    def _envelope(
        self, schema: dict[str, Any], space: str, fields: list[tuple[str, Convert | None]]
    ) -> Convert:
        """`before` and `after` become `Columns` (their plans: one per TOAST reading of the
        row record); other fields are converted as any record's."""
        types = {f["name"]: f["type"] for f in schema["fields"]}
        before_plan = self._plan(types["before"], space, toast=False)
        after_plan = self._plan(types["after"], space, toast=False)
        after_toast = self._plan(types["after"], space, toast=True)
        rest = _fields([(n, c) for n, c in fields if n not in ("before", "after")])

        def convert(value: Any) -> Any:
            before, after = value["before"], value["after"]
            if before is not None:
                value["before"] = Columns(before, before_plan, "before")
            if after is not None:
                plan = after_toast if toasted(value) else after_plan
                value["after"] = Columns(after, plan, "after")
            return rest(value)

        return convert

    def _plan(self, row: Any, namespace: str, toast: bool) -> Plan:
        """The columns of the row record (`row`: its union with null, or its name)."""
        if isinstance(row, list):
            (row,) = (branch for branch in row if branch != "null")
        if isinstance(row, str):
            full = row if "." in row or not namespace else f"{namespace}.{row}"
            row, namespace = self.defined[full] if full in self.defined else self.defined[row]
        namespace = _fullname(row, namespace).rpartition(".")[0]
        plan: Plan = {}
        for name, convert in self._fields(row, namespace, toast):
            plan[name] = (_ANY, _same) if convert is None else (_NULL_ONLY, convert)
        return plan

    def _fields(
        self, schema: dict[str, Any], space: str, toast: bool
    ) -> list[tuple[str, Convert | None]]:
        return [(f["name"], self.compile(f["type"], space, toast)) for f in schema["fields"]]


def _primitive(name: str, toast: bool) -> Convert | None:
    if name == "float":
        return _FLOAT32
    if name in ("string", "bytes") and toast:
        return _TEXT if name == "string" else _BYTES
    return None


def _is_text(schema: Any) -> bool:
    branches = schema if isinstance(schema, list) else [schema]
    return any(
        b == "string" or (isinstance(b, dict) and b.get("type") == "string") for b in branches
    )


def _then(first: Convert, second: Convert) -> Convert:
    return guarded(lambda value: second(first(value)))


def _toast(convert: Convert | None, toast: bool) -> Convert | None:
    return toast_aware(convert) if toast else convert


# Every type fastavro reads a value as: a column without a conversion passes as it is.
_TYPES: tuple[type, ...] = (int, str, float, bool, bytes, list, dict, type(None), Decimal)
_ANY = frozenset((*_TYPES, uuid.UUID, dt.date, dt.datetime, dt.time))
_NULL_ONLY: frozenset[type] = frozenset((type(None),))


def _same(value: Any) -> Any:
    return value


# A plain string or bytes field only needs its TOAST placeholder spotted. Plain strings are
# most fields of a Debezium record: a record checks them itself, without a call each.
_TEXT = toast_aware(None)
_BYTES = toast_aware(None)
# Avro's float is 32 bits: read back as the shortest decimal, as PostgreSQL and JSON write it.
_FLOAT32 = guarded(shortest_float32)


def _fields(fields: list[tuple[str, Convert | None]]) -> Convert:
    texts = [name for name, convert in fields if convert is _TEXT]
    converting = [(name, c) for name, c in fields if c is not None and c is not _TEXT]

    def convert(value: Any) -> Any:
        if value is None:
            return None
        for name in texts:
            item = value[name]
            if item.__class__ is str and item in PLACEHOLDER_TEXT:
                value[name] = UNAVAILABLE
        name = ""
        try:
            for name, field_convert in converting:
                value[name] = field_convert(value[name])
        except Mismatch as exc:
            raise exc.under(name) from None
        return value

    return convert


def _array(item: Convert | None, texts: bool) -> Convert | None:
    if item is None and not texts:
        return None

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if texts and lost_rows(value):
            return Unrepresentable("array", None, value)
        return value if item is None else [item(v) for v in value]

    return convert


def _map(item: Convert | None) -> Convert | None:
    if item is None:
        return None
    return lambda value: None if value is None else {k: item(v) for k, v in value.items()}
