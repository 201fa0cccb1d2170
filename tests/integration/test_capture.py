"""A PostgreSQL change arrives in Kafka as a Debezium event, on the real stack."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from confluent_kafka import Message

from cdc import Change, DecodeError
from cdc.decoding import coordinates, decoder_for
from cdc.tables.config import Encoding
from cdc.testing import RecordReader, read_records
from tests.integration.conftest import Pipeline


def payload(msg: Message) -> dict[str, Any] | None:
    raw = msg.value()
    if raw is None:
        return None
    body: dict[str, Any] = json.loads(raw)
    return body["payload"] if "schema" in body else body


def ops(records: list[Message]) -> list[str]:
    return [p["op"] if (p := payload(m)) else "tombstone" for m in records]


def test_snapshot_then_inserts_updates_deletes(pipeline: Pipeline) -> None:
    full, default = pipeline.table("full"), pipeline.table("dflt")
    for table in (full, default):
        pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, n int)")
        pipeline.sql(f"INSERT INTO {table} VALUES (1, 'before-connector', 1)")
    pipeline.write_file({full: {"replica_identity": "full"}, default: {}})
    assert pipeline.apply() == "created"
    assert pipeline.sql(
        "SELECT relname, relreplident FROM pg_class WHERE relname IN (%s, %s) ORDER BY 1",
        (default, full),
    ) == [(default, "d"), (full, "f")]

    topics = {pipeline.topic(full), pipeline.topic(default)}

    def snapshot_reads(records: list[Message]) -> list[Message]:
        return [m for m in records if (p := payload(m)) and p["op"] == "r"]

    def streamed(records: list[Message], topic: str) -> list[Message]:
        return [m for m in records if m.topic() == topic and m not in snapshot_reads([m])]

    with RecordReader(pipeline.stack.kafka_bootstrap, sorted(topics)) as reader:
        snap = reader.wait(lambda r: {m.topic() for m in snapshot_reads(r)} == topics)
        assert sorted(m.topic() for m in snap) == sorted(topics)  # one read per table
        for msg in snap:
            p = payload(msg)
            assert p is not None
            assert p["after"] == {"id": 1, "name": "before-connector", "n": 1}
            assert p["source"]["snapshot"] in (
                "true",
                "first",
                "last",
                "first_in_data_collection",
                "last_in_data_collection",
            )

        for table in (full, default):
            pipeline.sql(f"INSERT INTO {table} VALUES (2, 'new', 1)")
            pipeline.sql(f"UPDATE {table} SET n = 2 WHERE id = 2")
            pipeline.sql(f"DELETE FROM {table} WHERE id = 2")
        reader.wait(lambda r: all(len(streamed(r, t)) >= 4 for t in topics))
        records = reader.records

    for table in (full, default):
        stream = streamed(records, pipeline.topic(table))
        assert ops(stream) == ["c", "u", "d", "tombstone"], table
        create, update, delete, tombstone = (payload(m) for m in stream)
        assert create
        assert update
        assert delete
        assert tombstone is None
        assert create["before"] is None
        assert create["after"] == {"id": 2, "name": "new", "n": 1}
        assert update["after"] == {"id": 2, "name": "new", "n": 2}
        assert delete["after"] is None
        assert json.loads(stream[3].key())["payload"] == {"id": 2}  # same key as the row
        assert stream[3].key() == stream[2].key()
        if table == full:
            assert update["before"] == {"id": 2, "name": "new", "n": 1}
            assert delete["before"] == {"id": 2, "name": "new", "n": 2}
        else:
            # DEFAULT identity: no old row on update, only the key on delete.
            assert update["before"] is None
            assert delete["before"] == {"id": 2, "name": None, "n": None}
        assert create["source"]["table"] == table
        assert isinstance(create["source"]["lsn"], int)
        assert create["source"]["snapshot"] in (None, "false")


def test_heartbeats_arrive_while_tables_are_idle(pipeline: Pipeline) -> None:
    idle = pipeline.table("idle")
    pipeline.sql(f"CREATE TABLE {idle} (id int PRIMARY KEY)")
    pipeline.write_file({idle: {}}, heartbeat_interval_ms=500)
    pipeline.apply()
    beats = read_records(
        pipeline.stack.kafka_bootstrap, [f"__debezium-heartbeat.{pipeline.id}"], 3, timeout=60
    )
    first = json.loads(beats[0].value())
    assert first["schema"]["name"] == "io.debezium.connector.common.Heartbeat"
    assert json.loads(beats[0].key())["payload"] == {"serverName": pipeline.id}
    stamps = [json.loads(b.value())["payload"]["ts_ms"] for b in beats]
    assert stamps == sorted(stamps)
    assert stamps[-1] > stamps[0]
    # The action query keeps the heartbeat table (in the publication) moving.
    assert pipeline.sql(
        "SELECT count(*) FROM cdc.heartbeat WHERE ts > now() - interval '1 min'"
    ) == [(1,)]


def test_adding_a_table_and_applying_again_captures_it(pipeline: Pipeline) -> None:
    first, second = pipeline.table("first"), pipeline.table("second")
    for table in (first, second):
        pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    pipeline.sql(f"INSERT INTO {second} VALUES (1, 'one'), (2, 'two')")
    pipeline.write_file({first: {}})
    assert pipeline.apply() == "created"
    assert pipeline.apply() == "unchanged"

    pipeline.write_file({first: {}, second: {"replica_identity": "full"}})
    assert pipeline.apply() == "updated"
    pipeline.sql(f"INSERT INTO {second} VALUES (7, 'seven')")
    pipeline.sql(f"UPDATE {second} SET v = 'SEVEN' WHERE id = 7")

    def streamed(records: list[Message]) -> list[dict[str, Any]]:
        return [p for m in records if (p := payload(m)) and p["op"] != "r"]

    def read_ids(records: list[Message]) -> set[int]:
        return {p["after"]["id"] for m in records if (p := payload(m)) and p["op"] == "r"}

    with RecordReader(pipeline.stack.kafka_bootstrap, [pipeline.topic(second)]) as reader:
        records = reader.wait(lambda r: len(streamed(r)) >= 2 and read_ids(r) >= {1, 2})
    create, update = streamed(records)
    assert (create["op"], update["op"]) == ("c", "u")
    assert update["before"] == {"id": 7, "v": "seven"}
    # Rows that were there before the table was watched arrive by incremental snapshot.
    reads = [p for m in records if (p := payload(m)) and p["op"] == "r"]
    assert {p["source"]["snapshot"] for p in reads} == {"incremental"}
    assert {p["after"]["id"]: p["after"]["v"] for p in reads if p["after"]["id"] < 7} == {
        1: "one",
        2: "two",
    }
    pubtables = pipeline.sql(
        "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s "
        "ORDER BY 1",
        (pipeline.id,),
    )
    assert pubtables == [
        ("cdc.heartbeat",),
        ("cdc.signal",),
        (f"public.{first}",),
        (f"public.{second}",),
    ]


def test_excluded_columns_never_reach_kafka(pipeline: Pipeline) -> None:
    users = pipeline.table("users")
    pipeline.sql(f"CREATE TABLE {users} (id int PRIMARY KEY, email text, password_hash text)")
    pipeline.write_file({users: {"exclude_columns": ["password_hash"]}})
    pipeline.apply()
    pipeline.sql(f"INSERT INTO {users} VALUES (1, 'a@example.org', 'secret-hash')")
    (record,) = read_records(pipeline.stack.kafka_bootstrap, [pipeline.topic(users)], 1)
    assert b"secret-hash" not in record.value()
    p = payload(record)
    assert p is not None
    assert p["after"] == {"id": 1, "email": "a@example.org"}


def test_avro_records_use_the_registry(pipeline: Pipeline) -> None:
    items = pipeline.table("items")
    pipeline.sql(f"CREATE TABLE {items} (id int PRIMARY KEY, price numeric(10,2))")
    pipeline.write_file({items: {}}, encoding="avro")
    pipeline.apply()
    pipeline.sql(f"INSERT INTO {items} VALUES (1, 9.99)")
    (record,) = read_records(pipeline.stack.kafka_bootstrap, [pipeline.topic(items)], 1)
    value = record.value()
    assert value[0] == 0  # Confluent wire format: magic byte, then a 4-byte schema id
    schema_id = int.from_bytes(value[1:5], "big")
    response = httpx.get(
        f"{pipeline.stack.registry_url}/apis/ccompat/v7/schemas/ids/{schema_id}", timeout=10
    )
    assert response.status_code == 200
    schema = json.loads(response.json()["schema"])
    assert schema["type"] == "record"
    assert {f["name"] for f in schema["fields"]} >= {"before", "after", "source", "op"}

    # The decoder fetches the same schemas from the live registry and reads the record.
    decoder = decoder_for(Encoding.AVRO, pipeline.stack.registry_url)
    event = decoder.decode_message(record)
    assert isinstance(event, Change)
    assert event.after == {"id": 1, "price": Decimal("9.99")}
    assert event.key == {"id": 1}
    unknown = b"\0" + (2**31 - 1).to_bytes(4, "big") + value[5:]
    with pytest.raises(DecodeError, match="unknown schema id") as caught:
        decoder.decode(record.key(), unknown, coordinates(record))
    assert caught.value.offset == record.offset()


def test_generated_columns_arrive_in_snapshot_reads_only(pipeline: Pipeline) -> None:
    prices = pipeline.table("prices")
    pipeline.sql(
        f"CREATE TABLE {prices} (id int PRIMARY KEY, net int, "
        "gross int GENERATED ALWAYS AS (net * 2) STORED)"
    )
    pipeline.sql(f"INSERT INTO {prices} (id, net) VALUES (1, 10)")
    pipeline.write_file({prices: {"replica_identity": "full"}})
    pipeline.apply()
    pipeline.sql(f"INSERT INTO {prices} (id, net) VALUES (2, 20)")
    pipeline.sql(f"UPDATE {prices} SET net = 21 WHERE id = 2")
    read, create, update = (
        payload(m)
        for m in read_records(pipeline.stack.kafka_bootstrap, [pipeline.topic(prices)], 3)
    )
    assert read
    assert create
    assert update
    # Debezium's snapshot SELECTs the column; pgoutput (PostgreSQL 15) leaves it out of
    # every change, old row included, and the field is gone from the change's schema too.
    assert (read["op"], read["after"]) == ("r", {"id": 1, "net": 10, "gross": 20})
    assert create["after"] == {"id": 2, "net": 20}
    assert update["before"] == {"id": 2, "net": 20}
    assert update["after"] == {"id": 2, "net": 21}
