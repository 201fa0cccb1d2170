"""Broken and hostile records, each made from a real one: the unit tests break corpus records
and check the decoder; the reliability test breaks records Debezium just wrote on the real
stack and produces them into the same topics.

A `Kind` is one way to break a record: its name, whether it goes to a table's topic or an
outbox topic, the encodings it applies to, how to build it from a `Sample` (a real record of
that topic) and what the dead-letter reason must say. ``stage`` says who refuses it: the
decoder (a `DecodeError`); reading (a `DecodeError` when a handler reads the column, or the
key, that contradicts its schema); the router (no handler for its table or event type,
parked with ``unrouted="dead-letter"``); or the dispatcher (an event payload its model
refuses)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import fastavro

from cdc.decoding import AvroDecoder, Decoder, SchemaSource, StaticSchemas
from tests.corpus.load import DATA, OUTBOX, avro_schemas, decode, decoder, records

ENCODINGS = ("json", "json-noschema", "avro")
JSON_ENCODINGS = ("json", "json-noschema")
Target = Literal["table", "outbox"]
Stage = Literal["decode", "read", "route", "handler"]
Headers = tuple[tuple[str, bytes | None], ...]

# The value size of the huge records: close to the broker's default limit for a whole batch
# (message.max.bytes = 1,048,588), leaving room for the key, headers and batch overhead.
HUGE = 1_040_000
UNWATCHED = "not_watched"
UNKNOWN_EVENT = "no-such-event"
UNKNOWN_SCHEMA_ID = 2_000_000_000
_MARK = "cdc-hostile-marker"  # 18 characters, replaced by bytes of the same length
_LATIN1 = "café crème brûlée!".encode("latin-1")  # 18 bytes, not UTF-8
_NOT_UTF8 = b"cdc-hostile-\xff\xfe\xfd\xfc\xfb\xfa"  # 18 bytes


@dataclass(frozen=True)
class Sample:
    """A real record to break, and what rewriting it needs."""

    encoding: str
    key: bytes | None
    value: bytes
    headers: Headers = ()
    schemas: SchemaSource | None = None  # Avro: the writer schemas by id
    foreign_schema_id: int | None = None  # Avro: an id whose schema is not Avro


@dataclass(frozen=True)
class Bad:
    """A hostile record: exactly what is produced."""

    key: bytes | None
    value: bytes | None
    headers: Headers = ()


@dataclass(frozen=True)
class Kind:
    name: str
    target: Target
    build: Callable[[Sample], Bad]
    reason: str | Mapping[str, str]  # what the reason says (by encoding when they differ)
    encodings: tuple[str, ...] = ENCODINGS
    stage: Stage = "decode"
    part: str = "value"
    needs: tuple[str, ...] = field(default=())  # Sample fields it cannot do without

    def reason_for(self, encoding: str) -> str:
        return self.reason if isinstance(self.reason, str) else self.reason[encoding]

    def applies(self, sample: Sample) -> bool:
        return sample.encoding in self.encodings and all(getattr(sample, n) for n in self.needs)


# -- reading and rewriting a real record ---------------------------------------------------------


def _schema_id(raw: bytes) -> int:
    return int.from_bytes(raw[1:5], "big")


def _avro_schema(sample: Sample, raw: bytes) -> Any:
    assert sample.schemas is not None, "an Avro sample needs its schemas"
    return fastavro.parse_schema(sample.schemas.schema(_schema_id(raw)))


def body(sample: Sample) -> Any:
    """The sample's value as plain data: the envelope (a table record) or the payload text
    (an outbox record), before any logical conversion."""
    if sample.encoding == "avro":
        return fastavro.schemaless_reader(
            io.BytesIO(sample.value[5:]), _avro_schema(sample, sample.value), None
        )
    whole = json.loads(sample.value)
    return whole["payload"] if sample.encoding == "json" else whole


def encode(sample: Sample, new_body: Any, *, text: Callable[[str], bytes] = str.encode) -> bytes:
    """``new_body`` written as the sample's value was: the same schema, the same framing."""
    if sample.encoding == "avro":
        out = io.BytesIO()
        out.write(sample.value[:5])
        fastavro.schemaless_writer(out, _avro_schema(sample, sample.value), new_body)
        return out.getvalue()
    whole: Any = new_body
    if sample.encoding == "json":
        whole = json.loads(sample.value)
        whole["payload"] = new_body
    return text(json.dumps(whole, separators=(",", ":"), ensure_ascii=False))


def edited(sample: Sample, change: Callable[[Any], Any]) -> bytes:
    """The sample with its body changed: ``change`` edits it in place or returns a new one."""
    data = body(sample)
    result = change(data)
    return encode(sample, data if result is None else result)


def _set(path: str, value: Any) -> Callable[[Any], None]:
    *parents, last = path.split(".")

    def change(data: Any) -> None:
        for part in parents:
            data = data[part]
        data[last] = value

    return change


def _drop(path: str) -> Callable[[Any], None]:
    *parents, last = path.split(".")

    def change(data: Any) -> None:
        for part in parents:
            data = data[part]
        data.pop(last)

    return change


def _patched(sample: Sample, path: str, replacement: bytes) -> bytes:
    """The sample with the string at ``path`` replaced by raw bytes of the same length (so
    an Avro length prefix stays right): bytes no encoder would write."""
    assert len(replacement) == len(_MARK)
    value = edited(sample, _set(path, _MARK))
    assert value.count(_MARK.encode()) == 1
    return value.replace(_MARK.encode(), replacement)


def _sized(sample: Sample, path: str, char: str, total: int, *then: Callable[[Any], None]) -> bytes:
    """The sample with the string at ``path`` grown until the value is about ``total`` bytes."""

    def make(n: int) -> bytes:
        def change(data: Any) -> None:
            _set(path, char * n)(data)
            for step in then:
                step(data)

        return edited(sample, change)

    base = len(make(0))
    return make((total - base - 4) // len(char.encode()))  # 4: an Avro length prefix grows


def _deep(depth: int) -> bytes:
    return b'{"payload":' + b"[" * depth + b"]" * depth + b',"schema":null}'


def _deep_schema(depth: int) -> bytes:
    """JSON shallow enough to parse, whose Connect schema nests too deep to compile."""
    schema = b'{"type":"array","items":' * depth + b'{"type":"int32"}' + b"}" * depth
    return b'{"schema":' + schema + b',"payload":[]}'


def _json_text(sample: Sample) -> bytes:
    """The sample as JSON text: itself, or for Avro a JSON record of the corpus."""
    if sample.encoding != "avro":
        return sample.value
    return _corpus_value("json-noschema", DATA, "c")


def _corpus_value(encoding: str, topic: str, op: str | None = None) -> bytes:
    dec = decoder(encoding)
    for r in records(encoding):
        if (
            r.kafka.topic.startswith(topic)
            and r.value is not None
            and (op is None or getattr(decode(dec, r), "op", None) == op)
        ):
            return r.value
    raise LookupError(f"no {op or ''} record of {topic} in the {encoding} corpus")


def _value(make: Callable[[Sample], bytes | None]) -> Callable[[Sample], Bad]:
    """A builder that breaks only the value; the key and headers stay the sample's."""
    return lambda s: Bad(s.key, make(s), s.headers)


def _key(make: Callable[[Sample], bytes | None], *, value: bool = True) -> Callable[[Sample], Bad]:
    """A builder that breaks only the key (``value=False``: and sends no value)."""
    return lambda s: Bad(make(s), s.value if value else None, s.headers)


def _headers(change: Callable[[dict[str, bytes | None]], None]) -> Callable[[Sample], Bad]:
    def build(s: Sample) -> Bad:
        headers = dict(s.headers)
        change(headers)
        return Bad(s.key, s.value, tuple(headers.items()))

    return build


def _payload(text: str) -> Callable[[Sample], Bad]:
    """An outbox record whose payload (the JSON text the router copies) is ``text``."""
    return _value(lambda s: encode(s, text))


def _schema_as(schema_id: Callable[[Sample], int | None]) -> Callable[[Sample], Bad]:
    def make(s: Sample) -> bytes:
        number = schema_id(s)
        assert number is not None
        return b"\0" + number.to_bytes(4, "big") + s.value[5:]

    return _value(make)


def _array_record(sample: Sample) -> bytes:
    if sample.encoding == "json":
        schema = {"type": "array", "items": {"type": "int32", "optional": False}}
        return json.dumps({"schema": schema, "payload": [1, 2, 3]}).encode()
    return b"[1, 2, 3]"


def _other_converter(sample: Sample) -> bytes:
    """The same change as the other JsonConverter setting would have written it."""
    if sample.encoding == "json":
        return json.dumps(body(sample)).encode()
    return json.dumps({"schema": None, "payload": body(sample)}).encode()


def _from_key(sample: Sample, change: Callable[[bytes], bytes]) -> bytes:
    assert sample.key is not None
    return change(sample.key)


# -- the kinds -------------------------------------------------------------------------------------

MALFORMED = {"json": "malformed JSON", "json-noschema": "malformed JSON"}

TABLE_KINDS: tuple[Kind, ...] = (
    # Bytes that are not a record at all.
    Kind(
        "truncated",
        "table",
        _value(lambda s: s.value[: len(s.value) // 2]),
        MALFORMED | {"avro": "truncated"},
    ),
    Kind(
        "garbage bytes",
        "table",
        _value(lambda s: b"\xc3\x28\x00\x13 not a record \xff"),
        {"json": "invalid UTF-8", "json-noschema": "invalid UTF-8", "avro": "magic byte 0xc3"},
    ),
    Kind(
        "trailing bytes",
        "table",
        _value(lambda s: s.value + b"\0\0garbage"),
        MALFORMED | {"avro": "bytes left after the Avro record"},
    ),
    Kind("empty value that is not a tombstone", "table", _value(lambda s: b""), "empty (0 bytes)"),
    Kind(
        "value that reads as null",
        "table",
        _value(lambda s: b'{"schema":null,"payload":null}' if s.encoding == "json" else b"null"),
        "reads as null",
        JSON_ENCODINGS,
    ),
    Kind("header without a body", "table", _value(lambda s: s.value[:5]), "truncated", ("avro",)),
    Kind(
        "too short for the wire format",
        "table",
        _value(lambda s: b"\0\0\0"),
        "too short",
        ("avro",),
    ),
    Kind(
        "wrong magic byte",
        "table",
        _value(lambda s: b"\x01" + s.value[1:]),
        "magic byte 0x01",
        ("avro",),
    ),
    # Wrong encodings.
    Kind(
        "invalid UTF-8 in a string",
        "table",
        _value(lambda s: _patched(s, "after.c_text", _NOT_UTF8)),
        "invalid UTF-8",
    ),
    Kind(
        "latin-1 text",
        "table",
        _value(lambda s: _patched(s, "after.c_text", _LATIN1)),
        "invalid UTF-8",
    ),
    Kind(
        "UTF-16 text",
        "table",
        _value(lambda s: _json_text(s).decode().encode("utf-16")),
        {"json": "UTF-16", "json-noschema": "UTF-16", "avro": "magic byte 0xff"},
    ),
    Kind(
        "Avro bytes into a JSON topic",
        "table",
        _value(lambda s: _corpus_value("avro", DATA, "c")),
        "an Avro record?",
        JSON_ENCODINGS,
    ),
    Kind(
        "JSON into an Avro topic",
        "table",
        _value(lambda s: _corpus_value("json", DATA, "c")),
        "(JSON text?)",
        ("avro",),
    ),
    Kind(
        "the other JSON converter setting",
        "table",
        _value(_other_converter),
        "schemas.enable",
        JSON_ENCODINGS,
    ),
    # Avro schema ids that do not lead to this record's schema.
    Kind(
        "unknown schema id",
        "table",
        _schema_as(lambda s: UNKNOWN_SCHEMA_ID),
        "unknown schema id",
        ("avro",),
    ),
    Kind(
        "schema id of the key",
        "table",
        _schema_as(lambda s: _schema_id(s.key) if s.key else None),
        "bytes left after the Avro record",
        ("avro",),
    ),
    Kind(
        "schema id of a non-Avro schema",
        "table",
        _schema_as(lambda s: s.foreign_schema_id),
        "is not an Avro schema",
        ("avro",),
        needs=("foreign_schema_id",),
    ),
    # JSON that is not an envelope.
    Kind(
        "a JSON array",
        "table",
        _value(_array_record),
        "expected an object, got list",
        JSON_ENCODINGS,
    ),
    Kind(
        "deep nesting",
        "table",
        _value(lambda s: _deep(100_000)),
        "nested too deeply",
        JSON_ENCODINGS,
    ),
    Kind(
        "schema nested too deeply",
        "table",
        _value(lambda s: _deep_schema(600)),
        "nested too deeply",
        ("json",),
    ),
    Kind(
        "a number too long to read",
        "table",
        _value(
            lambda s: edited(s, _set("ts_ms", _MARK)).replace(f'"{_MARK}"'.encode(), b"9" * 5000)
        ),
        "digits",
        JSON_ENCODINGS,
    ),
    # Envelope fields missing or of the wrong type, unknown operations.
    Kind(
        "missing op",
        "table",
        _value(lambda s: edited(s, _drop("op"))),
        "op: missing",
        JSON_ENCODINGS,
    ),
    Kind(
        "unknown op", "table", _value(lambda s: edited(s, _set("op", "x"))), "unknown operation 'x'"
    ),
    Kind(
        "op of the wrong type",
        "table",
        _value(lambda s: edited(s, _set("op", 1))),
        "op: expected a string, got int",
        JSON_ENCODINGS,
    ),
    Kind(
        "message op without its message",
        "table",
        _value(lambda s: edited(s, _set("op", "m"))),
        "a message event without its message",
    ),
    Kind(
        "missing source",
        "table",
        _value(lambda s: edited(s, _drop("source"))),
        "source",
        JSON_ENCODINGS,
    ),
    Kind(
        "source without its table",
        "table",
        _value(lambda s: edited(s, _drop("source.table"))),
        "source.table",
        JSON_ENCODINGS,
    ),
    Kind(
        "unknown snapshot marker",
        "table",
        _value(lambda s: edited(s, _set("source.snapshot", "maybe"))),
        "source.snapshot",
    ),
    Kind(
        "ts_ms of the wrong type",
        "table",
        _value(lambda s: edited(s, _set("ts_ms", "soon"))),
        "ts_ms",
        JSON_ENCODINGS,
    ),
    Kind(
        "after of the wrong type",
        "table",
        _value(lambda s: edited(s, _set("after", "row"))),
        "after",
        JSON_ENCODINGS,
    ),
    # Huge records, close to the broker's limit.
    Kind(
        "huge record with an unknown op",
        "table",
        _value(lambda s: _sized(s, "op", "x", HUGE)),
        "unknown operation 'xxx",
    ),
    Kind(
        "huge string column in a broken record",
        "table",
        _value(lambda s: _sized(s, "after.c_text", "é", HUGE, _set("source.snapshot", "maybe"))),
        "source.snapshot",
    ),
    # Values that contradict their schema.
    Kind(
        "int column holding text",
        "table",
        _value(lambda s: edited(s, _set("after.c_int", "7"))),
        "after.c_int: expected an integer",
        ("json",),
        stage="read",
    ),
    Kind(
        "uuid column holding junk",
        "table",
        _value(lambda s: edited(s, _set("after.c_uuid", "not-a-uuid"))),
        "after.c_uuid",
        ("json", "avro"),
        stage="read",
    ),
    Kind(
        "decimal that is not a number",
        "table",
        _value(lambda s: edited(s, _set("after.c_numeric", "%%%"))),
        "after.c_numeric",
        ("json",),
        stage="read",
    ),
    Kind(
        "required column null",
        "table",
        _value(lambda s: edited(s, _set("after.id", None))),
        "after.id: required value is null",
        ("json",),
        stage="read",
    ),
    Kind(
        "Json column that is not JSON",
        "table",
        _value(lambda s: edited(s, _set("after.c_jsonb", "{nope"))),
        "after.c_jsonb",
        ("json", "avro"),
        stage="read",
    ),
    Kind(
        "array column holding a number",
        "table",
        _value(lambda s: edited(s, _set("after.c_int_array", 5))),
        "after.c_int_array",
        ("json",),
        stage="read",
    ),
    # Broken keys, the value being fine (or absent: a tombstone).
    Kind(
        "garbage key",
        "table",
        _key(lambda s: b"\xc3\x28 not a key"),
        {"json": "invalid UTF-8", "json-noschema": "invalid UTF-8", "avro": "magic byte 0xc3"},
        part="key",
        stage="read",
    ),
    Kind(
        "truncated key",
        "table",
        _key(lambda s: _from_key(s, lambda k: k[:-1])),
        MALFORMED | {"avro": "truncated"},
        part="key",
        stage="read",
    ),
    Kind(
        "key of the wrong shape",
        "table",
        _key(lambda s: b'{"schema":null,"payload":[1,2]}' if s.encoding == "json" else b"[1,2]"),
        "key: expected an object, got list",
        JSON_ENCODINGS,
        stage="read",
        part="key",
    ),
    Kind(
        "tombstone with a garbage key",
        "table",
        _key(lambda s: b"\xff\xfe garbage", value=False),
        {"json": "invalid UTF-8", "json-noschema": "invalid UTF-8", "avro": "magic byte 0xff"},
        part="key",
    ),
    # Well-formed, but of a table nobody watches.
    Kind(
        "unknown table",
        "table",
        _value(lambda s: edited(s, _set("source.table", UNWATCHED))),
        f"no handler for table 'public.{UNWATCHED}'",
        stage="route",
    ),
)


def _drop_header(name: str) -> Callable[[dict[str, bytes | None]], None]:
    def change(headers: dict[str, bytes | None]) -> None:
        del headers[name]

    return change


def _set_header(name: str, value: bytes) -> Callable[[dict[str, bytes | None]], None]:
    return lambda headers: headers.update({name: value})


OUTBOX_KINDS: tuple[Kind, ...] = (
    Kind(
        "unknown event type",
        "outbox",
        _headers(_set_header("eventType", UNKNOWN_EVENT.encode())),
        f"no handler for event type '{UNKNOWN_EVENT}'",
        stage="route",
    ),
    Kind(
        "event without its type header",
        "outbox",
        _headers(_drop_header("eventType")),
        "headers.eventType: missing",
    ),
    Kind(
        "event type header not UTF-8",
        "outbox",
        _headers(_set_header("eventType", b"\xffx")),
        "headers.eventType: invalid UTF-8",
    ),
    Kind(
        "event payload that is not JSON",
        "outbox",
        _payload("{nope"),
        {
            "json": "JSONDecodeError",
            "json-noschema": "payload: not JSON",
            "avro": "JSONDecodeError",
        },
    ),
    Kind(
        "event payload nested too deeply",
        "outbox",
        _payload("[" * 100_000 + "]" * 100_000),
        "nested too deeply",
    ),
    Kind(
        "event payload its model refuses",
        "outbox",
        _payload('{"unexpected": true}'),
        "payload does not fit",
        stage="handler",
    ),
    Kind("event without a payload", "outbox", _value(lambda s: None), "without a payload"),
    Kind(
        "aggregate id that is an object",
        "outbox",
        _key(
            lambda s: b'{"schema":null,"payload":{"a":1}}' if s.encoding == "json" else b'{"a":1}'
        ),
        "expected the aggregate id, got dict",
        JSON_ENCODINGS,
    ),
)

KINDS = TABLE_KINDS + OUTBOX_KINDS


def kinds_for(sample: Sample, target: Target) -> list[Kind]:
    """The kinds that apply to a sample of ``target``'s topic."""
    return [k for k in KINDS if k.target == target and k.applies(sample)]


# A JSON Schema document under an id of its own: what an Avro record must not point at.
FOREIGN_SCHEMA_ID = 999
FOREIGN_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def corpus_schemas() -> StaticSchemas:
    """The corpus's Avro schemas, and a JSON Schema at `FOREIGN_SCHEMA_ID`."""
    schemas: dict[int, Any] = {int(k): v for k, v in avro_schemas().items()}
    return StaticSchemas(schemas | {FOREIGN_SCHEMA_ID: FOREIGN_SCHEMA})


def corpus_decoder(encoding: str) -> Decoder:
    return AvroDecoder(corpus_schemas()) if encoding == "avro" else decoder(encoding)


def corpus_sample(encoding: str, target: Target) -> Sample:
    """A corpus record to break: the all_types table's first insert, or an outbox event."""
    dec = decoder(encoding)
    topic = DATA if target == "table" else OUTBOX
    for r in records(encoding):
        if not r.kafka.topic.startswith(topic) or r.value is None:
            continue
        if target == "outbox" or getattr(decode(dec, r), "op", None) == "c":
            if encoding != "avro":
                return Sample(encoding, r.key, r.value, r.kafka.headers)
            return Sample(
                encoding, r.key, r.value, r.kafka.headers, corpus_schemas(), FOREIGN_SCHEMA_ID
            )
    raise LookupError(f"no {target} record in the {encoding} corpus")
