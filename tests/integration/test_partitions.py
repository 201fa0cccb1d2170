"""A partitioned table, watched through its parent on the real stack: every partition's
changes (partitions made later too) reach the parent's handlers, in every encoding."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from confluent_kafka import Message

from cdc import Change, Context, Op, Row, on_change
from cdc.routing import Router, handlers_of
from cdc.testing import RecordReader, RunningConsumer
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack


class Reading(Row):
    id: int
    region: str
    v: str | None


Seen = tuple[str, dict[str, Any] | None, dict[str, Any] | None]


def op_of(record: Message) -> str | None:
    """A JSON record's op; None for a tombstone."""
    value = record.value()
    return None if value is None else json.loads(value)["payload"]["op"]


def key_id(record: Message) -> int:
    return int(json.loads(record.key())["payload"]["id"])


def row(r: Reading | None) -> dict[str, Any] | None:
    return None if r is None else r.model_dump()


@pytest.mark.parametrize("encoding", ["json", "json-noschema", "avro"])
def test_the_parent_of_a_partitioned_table_gets_every_partitions_changes(
    pipeline: Pipeline, encoding: str
) -> None:
    m = pipeline.partitioned_table("m", "eu", "us")
    pipeline.sql(f"INSERT INTO {m} VALUES (1, 'eu', 'old'), (2, 'us', 'old')")
    pipeline.write_file(
        {m: {"replica_identity": "full", "snapshot_reads": True}}, encoding=encoding
    )
    assert pipeline.apply() == "created"
    # PostgreSQL keeps a partition's replica identity its own: apply sets each one.
    assert pipeline.sql(
        "SELECT relname, relreplident FROM pg_class WHERE relname LIKE %s AND relkind IN "
        "('r', 'p') ORDER BY 1",
        (f"{m}%",),
    ) == [(m, "f"), (f"{m}_eu", "f"), (f"{m}_us", "f")]
    assert pipeline.sql(
        "SELECT tablename FROM pg_publication_tables WHERE pubname = %s AND schemaname = 'public'",
        (pipeline.id,),
    ) == [(m,)]

    seen: dict[tuple[int, str], list[Seen]] = {}
    lock = threading.Lock()

    @on_change(f"public.{m}", ops="cud", model=Reading)
    def record(change: Change[Reading], ctx: Context) -> None:
        assert change.key is not None
        with lock:
            seen.setdefault((change.key["id"], change.key["region"]), []).append(
                (change.op.value, row(change.before), row(change.after))
            )

    watched = pipeline.watched()
    settings = pipeline.stack.settings(
        watched_tables=pipeline.file, group_id=pipeline.id, http_port=None
    )
    router = Router(handlers_of(record), watched.tables)
    with RunningConsumer(settings, watched, router) as consumer:

        def handled(id_: int, region: str, count: int) -> None:
            """Wait until the handler has seen ``count`` changes of the row with this key."""
            consumer.wait_until(
                lambda _: len(seen.get((id_, region), [])) >= count,
                f"{count} change(s) of ({id_}, {region})",
                timeout=90,
            )

        handled(1, "eu", 1)
        handled(2, "us", 1)
        pipeline.sql(f"INSERT INTO {m} VALUES (3, 'eu', 'new'), (4, 'us', 'new')")
        pipeline.sql(f"UPDATE {m} SET v = 'within' WHERE id = 3")
        pipeline.sql(f"UPDATE {m} SET region = 'us' WHERE id = 3")  # eu -> us
        pipeline.sql(f"DELETE FROM {m} WHERE id = 4")
        # A partition made now, with nothing run by us: captured at once. Its replica
        # identity is PostgreSQL's default until apply runs again.
        pipeline.sql(f"CREATE TABLE {m}_as PARTITION OF {m} FOR VALUES IN ('as')")
        pipeline.sql(f"INSERT INTO {m} VALUES (5, 'as', 'new')")
        pipeline.sql(f"UPDATE {m} SET v = 'default identity' WHERE id = 5")
        handled(5, "as", 2)
        assert pipeline.apply() == "unchanged"
        pipeline.sql(f"UPDATE {m} SET v = 'full identity' WHERE id = 5")
        for id_, region, count in ((3, "eu", 3), (3, "us", 1), (4, "us", 2), (5, "as", 3)):
            handled(id_, region, count)

    def r(id_: int, region: str, v: str) -> dict[str, Any]:
        return {"id": id_, "region": region, "v": v}

    assert seen == {
        # The snapshot read the parent once, not each partition as well.
        (1, "eu"): [("r", None, r(1, "eu", "old"))],
        (2, "us"): [("r", None, r(2, "us", "old"))],
        # Moving to another partition is a delete of the old row and a create of the new
        # one (pgoutput sends the two; Debezium marks no key change): under FULL identity
        # the delete carries the whole old row.
        (3, "eu"): [
            ("c", None, r(3, "eu", "new")),
            ("u", r(3, "eu", "new"), r(3, "eu", "within")),
            ("d", r(3, "eu", "within"), None),
        ],
        (3, "us"): [("c", None, r(3, "us", "within"))],
        (4, "us"): [("c", None, r(4, "us", "new")), ("d", r(4, "us", "new"), None)],
        (5, "as"): [
            ("c", None, r(5, "as", "new")),
            ("u", None, r(5, "as", "default identity")),
            ("u", r(5, "as", "default identity"), r(5, "as", "full identity")),
        ],
    }
    every = [h for h in consumer.handled if isinstance(h.event, Change)]
    assert {h.topic for h in every} == {pipeline.topic(m)}
    assert {h.event.table for h in every if isinstance(h.event, Change)} == {f"public.{m}"}
    assert sum(1 for h in every if isinstance(h.event, Change) and h.event.op is Op.READ) == 2


def test_a_partitioned_table_watched_later_is_snapshotted_once_through_its_parent(
    pipeline: Pipeline,
) -> None:
    first, m = pipeline.table("first"), pipeline.partitioned_table("m", "eu", "us")
    pipeline.sql(f"CREATE TABLE {first} (id int PRIMARY KEY)")
    pipeline.sql(f"INSERT INTO {m} VALUES (1, 'eu', 'old'), (2, 'us', 'old')")
    pipeline.write_file({first: {}})
    assert pipeline.apply() == "created"
    pipeline.write_file({first: {}, m: {"snapshot_reads": True}})
    assert pipeline.apply() == "updated"

    seen: list[tuple[str, dict[str, Any]]] = []

    @on_change(f"public.{m}", model=Reading)
    def record(change: Change[Reading], ctx: Context) -> None:
        assert change.after is not None
        seen.append((change.op.value, change.after.model_dump()))

    watched = pipeline.watched()
    settings = pipeline.stack.settings(
        watched_tables=pipeline.file, group_id=pipeline.id, http_port=None
    )
    with RunningConsumer(settings, watched, Router(handlers_of(record), watched.tables)) as c:
        c.wait_until(lambda _: len(seen) >= 2, "two reads", timeout=90)
        # Nothing more: no read of a partition's rows besides the parent's.
        with pytest.raises(TimeoutError):
            c.wait_until(lambda _: len(seen) > 2, timeout=3)
        snapshot = [h.event for h in c.handled if isinstance(h.event, Change)]
    assert sorted(seen, key=lambda s: s[1]["id"]) == [
        ("r", {"id": 1, "region": "eu", "v": "old"}),
        ("r", {"id": 2, "region": "us", "v": "old"}),
    ]
    reads = [e for e in snapshot if e.op is Op.READ]
    assert {e.source.snapshot for e in reads} == {"incremental"}


def test_attached_tables_rows_and_a_partition_watched_alone(pipeline: Pipeline) -> None:
    m = pipeline.partitioned_table("m", "eu", "us")
    eu, ap = f"{m}_eu", f"{m}_ap"
    pipeline.write_file({eu: {}})
    assert pipeline.apply() == "created"
    # Watched alone, a partition is published as itself (the root is not in the publication).
    pipeline.sql(f"INSERT INTO {m} VALUES (1, 'eu', 'in eu'), (2, 'us', 'in us')")
    pipeline.sql(f"UPDATE {m} SET region = 'us' WHERE id = 1")
    with RecordReader(pipeline.stack.kafka_bootstrap, [pipeline.topic(eu)]) as reader:
        alone = reader.wait(lambda r: len(r) >= 3)  # create, delete, tombstone
    assert [(m_.topic(), op_of(m_)) for m_ in alone] == [
        (pipeline.topic(eu), "c"),
        (pipeline.topic(eu), "d"),
        (pipeline.topic(eu), None),
    ]

    # The parent watched: a table attached with rows brings none of them (they were never
    # changes of the parent), only what happens to it afterwards.
    pipeline.write_file({m: {}})
    assert pipeline.apply() == "updated"
    pipeline.sql(f"CREATE TABLE {ap} (LIKE {m} INCLUDING ALL)")
    pipeline.sql(f"INSERT INTO {ap} VALUES (7, 'ap', 'before attach')")
    pipeline.sql(f"ALTER TABLE {m} ATTACH PARTITION {ap} FOR VALUES IN ('ap')")
    pipeline.sql(f"INSERT INTO {m} VALUES (8, 'ap', 'after attach')")
    with RecordReader(pipeline.stack.kafka_bootstrap, [pipeline.topic(m)]) as reader:
        records = reader.wait(lambda r: any(key_id(x) == 8 for x in r))
    changes = {(key_id(x), op_of(x)) for x in records}
    assert (8, "c") in changes
    assert (7, "c") not in changes
