"""Debezium records in the Confluent Avro wire format: magic byte 0, a 4-byte big-endian
schema id, then Avro binary. Read with fastavro; schemas come from a `SchemaSource`."""

from __future__ import annotations

import io
from typing import Any

import fastavro

from cdc.decoding.base import Decoder
from cdc.decoding.connect_schema import Convert, Mismatch, guarded, toast_aware
from cdc.decoding.registry import NotAvro, SchemaSource, UnknownSchema
from cdc.events.values import PLACEHOLDER_TEXT, UNAVAILABLE, logical_converter

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
    `connect.name`) become Python values; TOAST placeholders become UNAVAILABLE. Every
    converter passes None through, so optional unions need no wrapper of their own."""
    return _compile(schema, {}, "") or (lambda value: value)


def _compile(schema: Any, named: dict[str, Convert | None], namespace: str) -> Convert | None:
    """None when values need no conversion (the common case, kept cheap)."""
    if isinstance(schema, str):
        if schema in _PRIMITIVE:
            return _TEXT if schema == "string" else _BYTES if schema == "bytes" else None
        full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
        return named.get(full, named.get(schema))
    if isinstance(schema, list):
        return _union(schema, named, namespace)
    kind = schema.get("type")
    if kind == "record":
        full = _fullname(schema, namespace)
        inner_space = full.rpartition(".")[0]
        fields = [(f["name"], _compile(f["type"], named, inner_space)) for f in schema["fields"]]
        convert = _record(fields)
        logical = logical_converter(schema.get("connect.name"), schema.get("connect.parameters"))
        if logical is not None:
            record, to_python = convert, logical
            convert = guarded(lambda value: to_python(record(value)))
        named[full] = convert
        return convert
    if kind == "array":
        return _array(_compile(schema["items"], named, namespace))
    if kind == "map":
        return _map(_compile(schema["values"], named, namespace))
    if kind in ("enum", "fixed"):
        named[_fullname(schema, namespace)] = None
        return None
    base = _compile(kind, named, namespace) if isinstance(kind, str) else None
    logical = logical_converter(schema.get("connect.name"), schema.get("connect.parameters"))
    if logical is None:
        return base
    if kind in ("string", "bytes"):
        return toast_aware(guarded(logical))
    return guarded(logical)


def _union(branches: list[Any], named: dict[str, Convert | None], namespace: str) -> Convert | None:
    others = [b for b in branches if b != "null"]
    if len(others) != 1:
        return None  # Debezium writes only optional unions: [null, T] or [T, null]
    return _compile(others[0], named, namespace)  # every converter here passes None through


# A plain string or bytes field only needs its TOAST placeholder spotted. Plain strings are
# most fields of a Debezium record: a record checks them itself, without a call each.
_TEXT = toast_aware(None)
_BYTES = toast_aware(None)


def _record(fields: list[tuple[str, Convert | None]]) -> Convert:
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


def _array(item: Convert | None) -> Convert:
    return toast_aware(None if item is None else (lambda value: [item(v) for v in value]))


def _map(item: Convert | None) -> Convert:
    return toast_aware(
        None if item is None else (lambda value: {k: item(v) for k, v in value.items()})
    )
