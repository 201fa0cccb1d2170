"""Debezium records written by Kafka's JsonConverter, with or without the Connect schema."""

from __future__ import annotations

import json
from typing import Any

import orjson

from cdc.decoding.base import Decoder
from cdc.decoding.connect_schema import Convert, compile_schema
from cdc.events.columns import Mismatch

_HEAD = b'{"schema":'
_SPLIT = b',"payload":'
_OP = b'"op":"'


class JsonDecoder(Decoder):
    """`schemas=True` for `schemas.enable=true`: every value is checked against the schema
    that travels with it and logical types become Python values. Without schemas the values
    stay raw (a row model converts them) and only the envelope is checked."""

    def __init__(self, *, schemas: bool = True, cache_size: int = 512) -> None:
        self.schemas = schemas
        self.raw = not schemas
        # Per length of the schema's bytes: those bytes, their converter and name.
        self._cache: dict[int, list[tuple[bytes, Convert, str | None]]] = {}
        self._cached = 0
        self._recent: list[tuple[bytes, Convert, str | None]] = []  # last used first
        self._cache_size = cache_size

    def peek_op(self, value: bytes) -> str | None:
        # The envelope's op follows before, after, source and transaction; only the ts_*
        # numbers come after it. Inside a string a quote is escaped, so the last `"op":"`
        # is the envelope's own.
        at = value.rfind(_OP)
        if at < 0 or value[at + 7 : at + 8] != b'"':
            return None
        return chr(value[at + 6])

    @staticmethod
    def _payload(raw: bytes, known: tuple[bytes, Convert, str | None]) -> tuple[Any, str | None]:
        head, convert, name = known
        # A view: the payload is parsed where it lies, not copied out of the record first.
        payload = _loads(memoryview(raw)[len(head) + len(_SPLIT) : -1])
        return (None if payload is None else convert(payload)), name

    def read(self, raw: bytes) -> tuple[Any, str | None]:
        if not self.schemas:
            value = _loads(raw)
            if isinstance(value, dict) and set(value) == {"schema", "payload"}:
                raise Mismatch(
                    "",
                    "a {schema, payload} envelope: is the converter writing schemas.enable=true?",
                )
            return value, None
        # JsonConverter writes the schema first. Once a schema's exact bytes have been seen
        # and checked, only the payload needs parsing: the schema is most of the record.
        # Known schemas are compared byte for byte (hashing kilobytes of schema per record
        # would cost more than parsing the payload): the few seen last first, then those
        # whose bytes end where this record's payload starts. A cached schema's bytes never
        # hold `,"payload":` (see below), so a record starting with them and that is split
        # where the search would have split it.
        if raw.endswith(b"}"):
            for known in self._recent:
                head = known[0]
                if raw.startswith(head) and raw.startswith(_SPLIT, len(head)):
                    return self._payload(raw, known)
        split = raw.find(_SPLIT)
        if split > 0 and raw.startswith(_HEAD) and raw.endswith(b"}"):
            for known in self._cache.get(split, ()):
                if raw.startswith(known[0]):
                    self._recent.insert(0, known)
                    del self._recent[_RECENT:]
                    return self._payload(raw, known)
        whole = _loads(raw)
        if not isinstance(whole, dict) or set(whole) != {"schema", "payload"}:
            raise Mismatch(
                "",
                "expected a {schema, payload} envelope: is the converter writing "
                "schemas.enable=false?",
            )
        schema, payload = whole["schema"], whole["payload"]
        if schema is None:
            return payload, None
        convert = compile_schema(schema)
        name = schema.get("name")
        # Cached only where the first `,"payload":` ends the schema exactly.
        if split > 0 and _head_is(raw[len(_HEAD) : split], schema):
            if self._cached >= self._cache_size:
                self._cache.clear()
                self._recent.clear()
                self._cached = 0
            self._cache.setdefault(split, []).append((raw[:split], convert, name))
            self._cached += 1
        return (None if payload is None else convert(payload)), name


_RECENT = 8  # schemas tried before searching for the payload


def _loads(raw: bytes | memoryview) -> Any:
    # orjson parses in a third of the time and takes exactly UTF-8 JSON. What it refuses
    # goes through the stdlib, which either reads it (NaN, lone surrogates: Jackson can
    # write those) or says precisely what is wrong. (An integer beyond 64 bits, which
    # Debezium never writes, becomes a float in orjson.)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raw = bytes(raw)
    # JsonConverter writes UTF-8 only. json.loads(bytes) would also take UTF-16 and UTF-32
    # (and a BOM): text the connector never wrote, so it is refused rather than guessed at.
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise Mismatch("", f"invalid UTF-8 at byte {exc.start}{_hint(raw)}") from None
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise Mismatch("", f"malformed JSON: {exc}{_hint(raw)}") from None


def _hint(raw: bytes) -> str:
    """What the bytes look like instead, when that is plain from their start."""
    if raw[:1] == b"\0":
        return " (an Avro record? it starts with the wire-format magic byte)"
    # A byte order mark, or ASCII with every other byte zero.
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or raw[1:4:2] == b"\0\0":
        return " (UTF-16 or UTF-32 text? the JSON converter writes UTF-8)"
    if raw[:3] == b"\xef\xbb\xbf":
        return " (a byte order mark: the JSON converter writes none)"
    return ""


def _head_is(head: bytes, schema: Any) -> bool:
    try:
        return bool(json.loads(head) == schema)
    except ValueError:
        return False
