"""The test kit's change factory builds what Debezium sends: checked field by field against
the captured corpus, and against the replica identity and excluded columns of the file."""

from __future__ import annotations

from cdc import Change, Kind, Op
from cdc.tables.config import parse_watched_tables
from cdc.testing import ChangeFactory
from tests.corpus.load import decoder, records

TABLE = "corpus.all_types"


def corpus(op: Op) -> Change:
    dec = decoder("json")
    for r in records("json"):
        event = dec.decode(r.key, r.value, r.kafka)
        if isinstance(event, Change) and event.op is op:
            return event
    raise AssertionError(f"no {op} in the corpus")


def watched(identity: str) -> ChangeFactory:
    return ChangeFactory(
        parse_watched_tables(
            f"""
            connector: {{topic_prefix: corpus}}
            tables:
              {TABLE}: {{replica_identity: {identity}, exclude_columns: [c_text]}}
            """
        )
    )


def test_same_shape_as_the_corpus() -> None:
    for op in (Op.CREATE, Op.UPDATE, Op.DELETE, Op.READ, Op.TRUNCATE):
        real = corpus(op)
        row = real.row or {}
        factory = ChangeFactory()
        if op is Op.CREATE:
            made = factory.insert(TABLE, row)
        elif op is Op.UPDATE:
            made = factory.update(TABLE, row, c_int=1)
        elif op is Op.DELETE:
            made = factory.delete(TABLE, row)
        elif op is Op.READ:
            made = factory.read(TABLE, row)
        else:
            made = factory.truncate(TABLE)
        assert (made.op, made.kind, made.table) == (real.op, real.kind, real.table)
        assert made.key == real.key
        assert made.kafka.topic == "cdc." + TABLE
        assert (made.source.db, made.source.schema_, made.source.table) == (
            real.source.db,
            real.source.schema_,
            real.source.table,
        )
        assert made.source.is_snapshot == real.source.is_snapshot
        assert (made.source.lsn is None) == (real.source.lsn is None)


def test_default_identity_sends_no_old_row_and_only_the_key_on_delete() -> None:
    real_update = corpus(Op.UPDATE)
    assert real_update.before is None  # captured with DEFAULT identity
    row = corpus(Op.DELETE).before
    assert row is not None
    factory = watched("default")
    assert factory.update(TABLE, row, c_int=1).before is None
    assert factory.update(TABLE, row, c_int=1).changed_columns() is None
    real_delete = corpus(Op.DELETE).before
    made = factory.delete(TABLE, {**row, "c_int": 5}).before
    assert made is not None
    assert made.keys() == real_delete.keys() - {"c_text"}  # excluded here
    # Only the key has a value (the corpus's c_default is the column's schema default).
    assert {k for k, v in made.items() if v is not None} == {"id"}
    assert {k for k, v in real_delete.items() if v is not None} == {"id", "c_default"}


def test_full_identity_and_excluded_columns() -> None:
    row = corpus(Op.DELETE).before
    assert row is not None
    factory = watched("full")
    update = factory.update(TABLE, row, c_int=7)
    assert update.changed_columns() == {"c_int"}
    assert update.before is not None
    assert update.after is not None
    assert "c_text" not in update.before
    assert "c_text" not in update.after
    assert factory.delete(TABLE, row).before == {k: v for k, v in row.items() if k != "c_text"}
    assert factory.read(TABLE, row).kind is Kind.SNAPSHOT_READ
    assert factory.read(TABLE, row).kafka.topic == "corpus." + TABLE
    offsets = [factory.insert(TABLE, row).kafka.offset for _ in range(3)]
    assert offsets == sorted(set(offsets))


def test_key_columns_key_the_change_as_debezium_does() -> None:
    def factory(identity: str) -> ChangeFactory:
        return ChangeFactory(
            parse_watched_tables(
                f"tables:\n  public.moves: {{replica_identity: {identity}, "
                "key_columns: [account_id]}\n"
            )
        )

    row = {"id": 1, "account_id": 7, "amount": 5}
    assert factory("default").insert("moves", row).key == {"account_id": 7}
    # Under DEFAULT identity PostgreSQL logs only the primary key of a deleted row.
    assert factory("default").delete("moves", row).key == {"account_id": None}
    assert factory("full").delete("moves", row).key == {"account_id": 7}
