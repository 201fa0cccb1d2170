"""An explicit NULL in a column with a DEFAULT arrives as None, and a default as the value,
in every encoding, under both replica identities (issue 22: the Avro converter used to turn
the NULLs into the columns' defaults)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from psycopg.rows import dict_row

from cdc import Change, Op
from cdc.decoding import decoder_for
from cdc.tables.config import Encoding
from cdc.testing import RecordReader
from tests.integration.conftest import Pipeline

COLUMNS = """
    id int PRIMARY KEY,
    n int DEFAULT 7,
    label text DEFAULT 'none',
    at timestamp DEFAULT now(),
    price numeric(10,2) DEFAULT 1.50,
    amount numeric DEFAULT 2.5,
    tags text[] DEFAULT '{a,b}',
    qty int NOT NULL DEFAULT 3
"""
NULLABLE_WITH_DEFAULTS = ("n", "label", "at", "price", "amount", "tags")
# Without a schema, timestamps and decimals stay as JSON carries them (numbers, base64).
TYPED_ANYWHERE = ("id", "n", "label", "tags", "qty")


def _same(got: dict[str, Any] | None, row: dict[str, Any] | None, encoding: Encoding) -> None:
    assert (got is None) == (row is None), (got, row)
    if got is None or row is None:
        return
    assert got.keys() == row.keys()
    for column, value in row.items():
        assert (got[column] is None) == (value is None), (column, got, row)
        if encoding is not Encoding.JSON_NO_SCHEMA or column in TYPED_ANYWHERE:
            assert got[column] == value, (column, got, row)


@pytest.mark.parametrize("encoding", list(Encoding), ids=lambda e: e.value)
def test_nulls_stay_null_and_defaults_stay_defaults(pipeline: Pipeline, encoding: Encoding) -> None:
    full, default = pipeline.table("full"), pipeline.table("dflt")
    for table in (full, default):
        pipeline.sql(f"CREATE TABLE {table} ({COLUMNS})")
    pipeline.write_file({full: {"replica_identity": "full"}, default: {}}, encoding=encoding.value)
    pipeline.apply()

    def row(table: str, id_: int) -> dict[str, Any]:
        with pipeline.db.cursor(row_factory=dict_row) as cur:
            found = cur.execute(f"SELECT * FROM {table} WHERE id = %s", (id_,)).fetchone()
        assert found is not None
        return found

    # (table, op, before, after) as PostgreSQL has the row around each statement.
    expected: list[tuple[str, Op, dict[str, Any] | None, dict[str, Any] | None]] = []
    for table in (full, default):
        pipeline.sql(f"INSERT INTO {table} VALUES (1, NULL, NULL, NULL, NULL, NULL, NULL)")
        explicit_nulls = row(table, 1)
        assert explicit_nulls["n"] is None
        assert explicit_nulls["qty"] == 3
        pipeline.sql(f"INSERT INTO {table} (id) VALUES (2)")
        defaults = row(table, 2)
        assert defaults["n"] == 7
        assert defaults["at"] is not None
        pipeline.sql(f"UPDATE {table} SET n = NULL WHERE id = 2")
        n_null = row(table, 2)
        pipeline.sql(f"UPDATE {table} SET label = 'set' WHERE id = 1")
        labelled = row(table, 1)
        pipeline.sql(f"DELETE FROM {table} WHERE id = 1")
        is_full = table == full
        expected += [
            (table, Op.CREATE, None, explicit_nulls),
            (table, Op.CREATE, None, defaults),
            (table, Op.UPDATE, defaults if is_full else None, n_null),
            (table, Op.UPDATE, explicit_nulls if is_full else None, labelled),
        ]
        if is_full:
            expected.append((table, Op.DELETE, labelled, None))

    topics = [pipeline.topic(full), pipeline.topic(default)]
    decoder = decoder_for(encoding, pipeline.stack.registry_url)
    with RecordReader(pipeline.stack.kafka_bootstrap, topics) as reader:
        records = reader.wait(lambda r: len(r) >= 2 * 6)  # 5 changes and a tombstone each
    changes = [e for m in records if isinstance(e := decoder.decode_message(m), Change)]
    assert len(changes) == 10
    by_table = {t: [c for c in changes if c.table == f"public.{t}"] for t in (full, default)}

    # DEFAULT identity: a delete carries the key and no other column: None, not a default.
    # (qty is NOT NULL: its schema is required, so Debezium fills it with the default.)
    delete = by_table[default].pop()
    assert delete.op is Op.DELETE
    assert delete.after is None
    assert delete.before is not None
    assert {k: v for k, v in delete.before.items() if k != "qty"} == {
        "id": 1,
        **dict.fromkeys(NULLABLE_WITH_DEFAULTS),
    }

    got = [c for t in (full, default) for c in by_table[t]]
    assert [(c.table, c.op) for c in got] == [(f"public.{t}", op) for t, op, _, _ in expected]
    for change, (_, _, before, after) in zip(got, expected, strict=True):
        _same(change.before, before, encoding)
        _same(change.after, after, encoding)
    if encoding is Encoding.AVRO:
        _registered_without_nullable_defaults(pipeline, records[0].value())


def _registered_without_nullable_defaults(pipeline: Pipeline, value: bytes) -> None:
    """The registered schema: optional columns default to null, required ones keep theirs."""
    schema_id = int.from_bytes(value[1:5], "big")
    response = httpx.get(
        f"{pipeline.stack.registry_url}/apis/ccompat/v7/schemas/ids/{schema_id}", timeout=10
    )
    response.raise_for_status()
    envelope = json.loads(response.json()["schema"])
    # The row's record is defined at its first use (`before`), then named.
    (before,) = (f for f in envelope["fields"] if f["name"] == "before")
    (row,) = (t for t in before["type"] if t != "null")
    defaults = {f["name"]: f.get("default") for f in row["fields"]}
    assert defaults == {"id": None, **dict.fromkeys(NULLABLE_WITH_DEFAULTS), "qty": 3}
