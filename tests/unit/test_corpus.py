"""The captured corpus is complete and self-sufficient: every encoding holds every kind of
record, and Avro records decode offline with the registry schemas saved beside them."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest

from tests.corpus.load import (
    DATA,
    ENCODINGS,
    HEARTBEAT,
    MESSAGE,
    TX,
    avro_schemas,
    expected,
    records,
)

OPS = ["r", "r", "r", "r", "c", "u", "u", "u", "d", None, "t"]  # None: the delete's tombstone


# Read without our decoders, so the corpus is checked independently of them.
def json_value(body: bytes | None) -> Any:
    if body is None:
        return None
    value = json.loads(body)
    return value["payload"] if isinstance(value, dict) and "schema" in value else value


def avro_value(body: bytes | None, schemas: dict[str, str]) -> Any:
    if body is None:
        return None
    assert body[0] == 0
    schema = fastavro.parse_schema(json.loads(schemas[str(int.from_bytes(body[1:5], "big"))]))
    return fastavro.schemaless_reader(io.BytesIO(body[5:]), schema)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_kind_of_record_is_there(encoding: str) -> None:
    recs = records(encoding)
    if encoding == "avro":
        schemas = avro_schemas()
        values = [avro_value(r.value, schemas) for r in recs]
    else:
        values = [json_value(r.value) for r in recs]
    by_topic: dict[str, list[Any]] = {}
    for rec, value in zip(recs, values, strict=True):
        by_topic.setdefault(rec.kafka.topic, []).append(value)
    assert [v and v["op"] for v in by_topic[DATA]] == OPS
    assert by_topic[HEARTBEAT]
    assert all(v["ts_ms"] > 0 for v in by_topic[HEARTBEAT])
    (message,) = by_topic[MESSAGE]
    assert message["op"] == "m"
    assert message["message"]["prefix"] == "cdc-corpus"
    statuses = [v["status"] for v in by_topic[TX]]
    assert statuses == ["BEGIN", "END"] * 6
    # The update that left the TOASTed column alone carries Debezium's placeholder.
    first_update = by_topic[DATA][5]
    assert first_update["after"]["c_toast"] == "__debezium_unavailable_value"
    assert first_update["after"]["c_int"] == 7


def test_expected_rows_match_the_steps() -> None:
    rows = expected()
    assert sorted(rows["snapshot"]) == ["1", "2", "3", "5"]
    assert [s["op"] for s in rows["steps"]] == ["c", "u", "u", "u", "d", "m", "t"]
    row1 = rows["snapshot"]["1"]
    assert row1["c_numeric"] == {"$decimal": "123456789.125"}
    assert row1["c_uuid"] == {"$uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}
    assert len(row1["c_toast"]) == 400 * 32
    row3 = rows["snapshot"]["3"]
    assert row3["c_date"] == {"$infinity": "infinity"}
    assert row3["c_timestamptz"] == {"$infinity": "-infinity"}
