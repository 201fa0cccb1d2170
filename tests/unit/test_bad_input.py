"""Every kind of bad record raises a DecodeError that names topic, partition, offset and the
reason, and nothing else. The bad records are real corpus records, broken on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from cdc import DecodeError
from cdc.events import KafkaCoordinates
from tests.corpus.load import DATA, decoder, records

KAFKA = KafkaCoordinates(topic=DATA, partition=3, offset=1234)


def corpus_bytes(encoding: str, op: str = "c") -> tuple[bytes | None, bytes]:
    dec = decoder(encoding)
    for r in records(encoding):
        if r.kafka.topic == DATA and r.value is not None:
            event = dec.decode(r.key, r.value, r.kafka)
            if getattr(event, "op", None) == op:
                return r.key, r.value
    raise AssertionError(f"no {op} record in the {encoding} corpus")


def edit_json(encoding: str, change: Callable[[dict[str, Any]], None]) -> bytes:
    """A corpus create with its payload (or bare value) edited."""
    _, value = corpus_bytes(encoding)
    body = json.loads(value)
    change(body["payload"] if encoding == "json" else body)
    return json.dumps(body).encode()


def edit_avro_schema_id(schema_id: int) -> bytes:
    _, value = corpus_bytes("avro")
    return b"\0" + schema_id.to_bytes(4, "big") + value[5:]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(body: dict[str, Any]) -> None:
        for part in parents:
            body = body[part]
        body[last] = value

    return change


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.pop(name)


def _deep(depth: int) -> bytes:
    return b'{"payload":' + b"[" * depth + b"]" * depth + b',"schema":null}'


BAD: list[tuple[str, str, Callable[[], bytes], str]] = [
    ("malformed JSON", "json", lambda: b'{"schema": {"type":', "malformed JSON"),
    ("invalid UTF-8", "json-noschema", lambda: b'{"op": "c\xff\xfe"}', "UTF-8"),
    ("empty value", "json", lambda: b"", "malformed JSON"),
    ("Avro bytes to a JSON decoder", "json", lambda: corpus_bytes("avro")[1], "Avro record?"),
    ("no schema envelope", "json", lambda: corpus_bytes("json-noschema")[1], "schemas.enable"),
    ("a JSON array", "json-noschema", lambda: b"[1, 2, 3]", "expected an object"),
    ("deep nesting", "json-noschema", lambda: _deep(100_000), "nested too deeply"),
    ("missing op", "json", lambda: edit_json("json", _drop("op")), "op: missing"),
    ("no op at all", "json-noschema", lambda: b'{"before": null}', "op: missing"),
    ("unknown op", "json-noschema", lambda: edit_json("json-noschema", _set("op", "x")), "'x'"),
    (
        "op of the wrong type",
        "json-noschema",
        lambda: edit_json("json-noschema", _set("op", 1)),
        "op",
    ),
    (
        "missing source",
        "json-noschema",
        lambda: edit_json("json-noschema", _drop("source")),
        "source",
    ),
    (
        "source without its table",
        "json-noschema",
        lambda: edit_json("json-noschema", lambda b: b["source"].pop("table")),
        "source.table",
    ),
    (
        "ts_ms of the wrong type",
        "json-noschema",
        lambda: edit_json("json-noschema", _set("ts_ms", "soon")),
        "ts_ms",
    ),
    (
        "int column holding text",
        "json",
        lambda: edit_json("json", _set("after.c_int", "7")),
        "after.c_int: expected an integer",
    ),
    (
        "uuid column holding junk",
        "json",
        lambda: edit_json("json", _set("after.c_uuid", "not-a-uuid")),
        "after.c_uuid",
    ),
    (
        "decimal that is not base64",
        "json",
        lambda: edit_json("json", _set("after.c_numeric", "%%%")),
        "after.c_numeric",
    ),
    (
        "required column null",
        "json",
        lambda: edit_json("json", _set("after.id", None)),
        "after.id: required value is null",
    ),
    (
        "Json column that is not JSON",
        "json",
        lambda: edit_json("json", _set("after.c_jsonb", "{nope")),
        "after.c_jsonb",
    ),
    (
        "array column holding a number",
        "json",
        lambda: edit_json("json", _set("after.c_int_array", 5)),
        "after.c_int_array",
    ),
    (
        "after of the wrong type",
        "json-noschema",
        lambda: edit_json("json-noschema", _set("after", "row")),
        "after",
    ),
    (
        "snapshot marker unknown",
        "json-noschema",
        lambda: edit_json("json-noschema", _set("source.snapshot", "maybe")),
        "source.snapshot",
    ),
    ("truncated Avro", "avro", lambda: corpus_bytes("avro")[1][:40], "truncated"),
    ("wrong magic byte", "avro", lambda: b"\x01" + corpus_bytes("avro")[1][1:], "magic byte"),
    ("too short for Avro", "avro", lambda: b"\0\0\0", "too short"),
    ("unknown schema id", "avro", lambda: edit_avro_schema_id(999_999), "unknown schema id"),
    ("schema id of another record", "avro", lambda: edit_avro_schema_id(4), "left after"),
    ("bytes after the Avro record", "avro", lambda: corpus_bytes("avro")[1] + b"\0\0", "left"),
]


@pytest.mark.parametrize(
    ("encoding", "make", "reason"),
    [pytest.param(enc, make, reason, id=name) for name, enc, make, reason in BAD],
)
def test_bad_value(encoding: str, make: Callable[[], bytes], reason: str) -> None:
    dec = decoder(encoding)
    key, _ = corpus_bytes(encoding)
    with pytest.raises(DecodeError) as caught:
        dec.decode(key, make(), KAFKA)
    error = caught.value
    assert (error.topic, error.partition, error.offset, error.part) == (DATA, 3, 1234, "value")
    assert reason in error.reason
    assert f"{DATA}[3]@1234 value:" in str(error)


@pytest.mark.parametrize("encoding", ["json", "json-noschema", "avro"])
def test_bad_key(encoding: str) -> None:
    _, value = corpus_bytes(encoding)
    with pytest.raises(DecodeError) as caught:
        decoder(encoding).decode(b"\x07garbage", value, KAFKA)
    assert caught.value.part == "key"


def test_a_good_record_after_bad_ones_still_decodes() -> None:
    dec = decoder("json")
    key, value = corpus_bytes("json")
    for bad in (b"{", edit_json("json", _drop("op")), b""):
        with pytest.raises(DecodeError):
            dec.decode(key, bad, KAFKA)
    assert dec.decode(key, value, KAFKA).kind.value == "change"
