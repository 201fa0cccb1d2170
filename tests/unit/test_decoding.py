"""Every captured record decodes, in every encoding, to the values psycopg read from the same
rows: the corpus round trip."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import pytest

from cdc import MICROS, MILLIS, UNAVAILABLE, Change, Kind, Op, Row, Scale, Unavailable
from cdc.decoding import JsonDecoder
from cdc.events import Event, Heartbeat, Snapshot, Tombstone, TransactionEvent
from cdc.events.columns import Columns, Mismatch
from tests.corpus.load import (
    DATA,
    ENCODINGS,
    HEARTBEAT,
    MESSAGE,
    OUTBOX,
    TX,
    decode,
    decoder,
    expected,
    expected_row,
    records,
)


class AllTypes(Row):
    """The corpus table as a handler would declare it for JSON without schemas."""

    id: int
    c_smallint: int | None
    c_int: int | None
    c_bigint: int | None
    c_numeric: Annotated[Decimal, Scale(3)] | None
    c_numeric_var: Decimal | None
    c_real: float | None
    c_double: float | None
    c_bool: bool | None
    c_text: str | None
    c_varchar: str | None
    c_char: str | None
    c_bytea: bytes | None
    c_date: dt.date | None
    c_time_ms: Annotated[dt.time, MILLIS] | None
    c_time_us: Annotated[dt.time, MICROS] | None
    c_timetz: dt.time | None
    c_timestamp_ms: Annotated[dt.datetime, MILLIS] | None
    c_timestamp_us: Annotated[dt.datetime, MICROS] | None
    c_timestamptz: dt.datetime | None
    c_interval: dt.timedelta | None
    c_json: dict[str, Any] | None
    c_jsonb: dict[str, Any] | list[Any] | None
    c_uuid: UUID | None
    c_mood: str | None
    c_int_array: list[int | None] | None
    c_text_array: list[str | None] | None
    c_default: str
    c_toast: str | Unavailable | None


def decoded(encoding: str) -> list[Event]:
    dec = decoder(encoding)
    return [decode(dec, r) for r in records(encoding)]


def by_topic(encoding: str, topic: str) -> list[Event]:
    return [e for e in decoded(encoding) if e.kafka.topic == topic]


def rows(encoding: str, change: Change) -> dict[str, Any]:
    assert change.after is not None
    if encoding == "json-noschema":
        return dict(AllTypes.model_validate(change.after))
    return change.after


def assert_same(actual: dict[str, Any], wanted: dict[str, Any]) -> None:
    assert set(actual) == set(wanted)
    for column, value in wanted.items():
        got = actual[column]
        assert got == value, column
        assert type(got) is type(value), column
        if isinstance(value, Decimal):  # same scale too, not only the same number
            assert got.as_tuple() == value.as_tuple(), column
        if isinstance(value, dt.datetime | dt.time):
            assert (got.tzinfo is None) == (value.tzinfo is None), column


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_snapshot_reads_equal_what_psycopg_reads(encoding: str) -> None:
    reads = [e for e in by_topic(encoding, DATA) if isinstance(e, Change) and e.op is Op.READ]
    snapshot = expected()["snapshot"]
    assert sorted(str(r.key["id"]) for r in reads if r.key) == sorted(snapshot)
    for read in reads:
        assert read.kind is Kind.SNAPSHOT_READ
        assert read.source.is_snapshot
        assert read.before is None
        assert read.key is not None
        assert_same(rows(encoding, read), expected_row(snapshot[str(read.key["id"])]))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_streamed_changes_equal_what_psycopg_reads(encoding: str) -> None:
    changes = [e for e in by_topic(encoding, DATA) if isinstance(e, Change) and e.op is not Op.READ]
    steps = [s for s in expected()["steps"] if s["op"] != "m"]
    assert [c.op.value for c in changes] == [s["op"] for s in steps]
    toast_kept = 0
    for change, step in zip(changes, steps, strict=True):
        assert change.kind is (Kind.TRUNCATE if change.op is Op.TRUNCATE else Kind.CHANGE)
        assert not change.source.is_snapshot
        assert isinstance(change.source.lsn, int)
        assert isinstance(change.source.tx_id, int)
        assert change.transaction is not None
        if step["op"] == "t":
            assert change.key is None
            assert change.before is None
            assert change.after is None
            continue
        assert change.key == {"id": step["id"]}
        if step["op"] == "d":
            assert change.after is None
            assert change.before is not None
            assert change.before["id"] == step["id"]
            assert change.row is change.before
            continue
        want = expected_row(step["after"])
        got = dict(rows(encoding, change))
        if got["c_toast"] is UNAVAILABLE:
            # The update that left the TOASTed column alone: never the placeholder string.
            toast_kept += 1
            got["c_toast"] = want["c_toast"]
        assert_same(got, want)
    assert toast_kept == 1


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_other_kinds_of_record(encoding: str) -> None:
    data = by_topic(encoding, DATA)
    (tombstone,) = [e for e in data if isinstance(e, Tombstone)]
    assert tombstone.table == "corpus.all_types"
    assert tombstone.key == {"id": 3}
    assert tombstone.kind is Kind.TOMBSTONE

    beats = by_topic(encoding, HEARTBEAT)
    assert beats
    assert all(isinstance(b, Heartbeat) and b.ts_ms > 0 for b in beats)
    assert all(b.kind is Kind.HEARTBEAT for b in beats)

    (message,) = by_topic(encoding, MESSAGE)
    assert isinstance(message, Change)
    assert message.kind is Kind.MESSAGE
    assert message.message is not None
    assert message.message.prefix == "cdc-corpus"
    assert message.message.content == b"hello from the corpus"
    assert message.table == ""

    boundaries = by_topic(encoding, TX)
    assert all(isinstance(t, TransactionEvent) for t in boundaries)
    assert [t.status for t in boundaries if isinstance(t, TransactionEvent)] == [
        "BEGIN",
        "END",
    ] * 6
    # A change carries its BEGIN's id ("txId:lsn"); the END, with the counts, has the same txId.
    begins = {t.id for t in boundaries if isinstance(t, TransactionEvent) and t.status == "BEGIN"}
    ends = {
        t.id.split(":")[0]: t
        for t in boundaries
        if isinstance(t, TransactionEvent) and t.status == "END"
    }
    for change in data:
        if isinstance(change, Change) and change.transaction is not None:
            assert change.transaction.id in begins
            end = ends[change.transaction.id.split(":")[0]]
            assert end.data_collections is not None
            counts = {d.data_collection: d.event_count for d in end.data_collections}
            assert change.transaction.data_collection_order <= counts["corpus.all_types"]


def test_snapshot_markers_cover_the_whole_snapshot() -> None:
    reads = [e for e in decoded("json") if isinstance(e, Change) and e.op is Op.READ]
    markers = [r.source.snapshot for r in reads]
    assert markers[0] is Snapshot.FIRST
    assert markers[-1] in (Snapshot.LAST, Snapshot.LAST_IN_DATA_COLLECTION)
    assert all(r.source.is_snapshot for r in reads)


def test_idempotency_keys_name_the_change_not_the_delivery() -> None:
    """Three connectors captured the same WAL: their streamed changes share LSN, txId and key,
    so the keys agree across encodings, and no two changes share one."""
    keys = {}
    for encoding in ENCODINGS:
        keys[encoding] = [
            e.idempotency_key
            for e in decoded(encoding)
            if isinstance(e, Change) and e.op is not Op.READ
        ]
    assert len(set(keys["json"])) == len(keys["json"]) == 7  # c, 3 u, d, t, m
    assert sorted(keys["json"]) == sorted(keys["avro"]) == sorted(keys["json-noschema"])
    again = [
        e.idempotency_key for e in decoded("json") if isinstance(e, Change) and e.op is not Op.READ
    ]
    assert again == keys["json"]


def test_changed_columns() -> None:
    create = next(e for e in decoded("json") if isinstance(e, Change) and e.op is Op.CREATE)
    assert create.after is not None
    assert create.changed_columns() == frozenset(create.after)
    before = create.after
    after = Columns(dict(create.after.raw(), c_int=8, c_toast=UNAVAILABLE))
    update = create.with_rows(before, after)
    update.op = Op.UPDATE
    assert update.changed_columns() == {"c_int"}
    # Compared as encoded: nothing is converted to find out.
    assert before._read is None
    # DEFAULT replica identity: no old row, so what changed is unknown.
    assert update.with_rows(None, after).changed_columns() is None


def test_a_row_model_refuses_the_toast_placeholder_unless_declared() -> None:
    class Strict(Row):
        id: int
        c_toast: str

    class Lenient(Row):
        id: int
        c_toast: str | Unavailable

    (after,) = (_raw_change("u", None, "__debezium_unavailable_value").after,)
    assert after is not None
    assert Lenient.model_validate(after).c_toast is UNAVAILABLE
    with pytest.raises(ValueError, match="c_toast"):
        Strict.model_validate(after)


def test_a_raw_timestamp_without_its_unit_is_refused() -> None:
    class Vague(Row):
        at: dt.datetime

    with pytest.raises(ValueError, match="MICROS"):
        Vague.model_validate({"at": 946684799999999})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_trusted_equals_model_construct(encoding: str) -> None:
    """Decoders skip pydantic's bookkeeping; what they build must not differ from it."""
    for event in decoded(encoding):
        if isinstance(event, Change):
            continue  # not a pydantic model
        values = {name: getattr(event, name) for name in type(event).model_fields}
        built = type(event).model_construct(**values)
        assert built == event
        assert built.model_dump() == event.model_dump()
        assert built.model_fields_set == event.model_fields_set
        assert hash(built.kafka) == hash(event.kafka)


def test_schema_cache_is_only_used_when_the_split_is_exact() -> None:
    """A schema that itself contains `,"payload":` is never cached by a wrong prefix."""
    schema = {
        "type": "struct",
        "name": "odd.Value",
        "fields": [
            {"type": "string", "optional": False, "field": "op"},
            {
                "type": "string",
                "optional": True,
                "field": "note",
                "parameters": {"a": "1", "payload": "x"},
            },
        ],
    }
    dec = JsonDecoder()
    for op in ("c", "u"):
        raw = json.dumps(
            {"schema": schema, "payload": {"op": op, "note": "n"}}, separators=(",", ":")
        ).encode()
        assert raw.find(b',"payload":') < raw.rfind(b',"payload":')
        data, name = dec.read(raw)
        assert (data, name) == ({"op": op, "note": "n"}, "odd.Value")


def test_schemas_of_equal_length_are_told_apart() -> None:
    """Known schemas are looked up by their length, then compared byte for byte."""

    def record(field: str, kind: str, value: object) -> bytes:
        schema = {
            "type": "struct",
            "name": "same.Value",
            "fields": [{"type": kind, "optional": False, "field": field}],
        }
        payload = {field: value}
        return json.dumps({"schema": schema, "payload": payload}, separators=(",", ":")).encode()

    dec = JsonDecoder()
    ints, texts = record("aaa", "int64", 7), record("bb", "string", "x")
    assert ints.find(b',"payload":') == texts.find(b',"payload":')
    for _ in range(2):  # the first read of each caches its schema; the second uses it
        assert dec.read(ints) == ({"aaa": 7}, "same.Value")
        assert dec.read(texts) == ({"bb": "x"}, "same.Value")
    with pytest.raises(Mismatch, match="bb: expected a string, got int"):
        dec.read(record("bb", "string", 7))
    # More schemas in turn than are tried before searching: each still gets its own.
    many = [
        (record(f"f{i}", kind, value), {f"f{i}": value})
        for i in range(12)
        for kind, value in (("int64", i), ("string", str(i)))
    ]
    for _ in range(3):
        for raw, data in many:
            assert dec.read(raw) == (data, "same.Value")


def _java_name_uuid(name: bytes) -> str:
    """`java.util.UUID.nameUUIDFromBytes`, step by step as the JDK does it."""
    md5 = bytearray(hashlib.md5(name).digest())  # noqa: S324
    md5[6] = (md5[6] & 0x0F) | 0x30  # version 3
    md5[8] = (md5[8] & 0x3F) | 0x80  # IETF variant
    return str(UUID(bytes=bytes(md5)))


def _raw_change(op: str, before: dict[str, Any] | None, column: Any) -> Change:
    """A json-noschema change of the corpus's table with `c_toast` set to `column`."""
    update = next(r for r in records("json-noschema") if r.value and b'"op":"u"' in r.value)
    assert update.value is not None
    body = json.loads(update.value)
    body.update(op=op, before=before, after={"id": 4, "c_toast": column})
    value = json.dumps(body).encode()
    event = decoder("json-noschema").decode(update.key, value, update.kafka)
    assert isinstance(event, Change)
    return event


_PLACEHOLDERS = [
    "__debezium_unavailable_value",  # text, varchar, json
    "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==",  # bytea, base64 in JSON
    ["__debezium_unavailable_value"],  # text[]
    list(b"__debezium_unavailable_value"),  # int[] and bigint[]
    {"__debezium_unavailable_value": "__debezium_unavailable_value"},  # hstore
    [_java_name_uuid(b"__debezium_unavailable_value")],  # uuid[]
]


@pytest.mark.parametrize("placeholder", _PLACEHOLDERS)
def test_every_form_of_the_toast_placeholder(placeholder: Any) -> None:
    """An update without the old row (REPLICA IDENTITY DEFAULT) is where PostgreSQL leaves an
    unchanged TOASTed value out."""
    after = _raw_change("u", None, placeholder).after
    assert after is not None
    assert after["c_toast"] is UNAVAILABLE


@pytest.mark.parametrize("placeholder", _PLACEHOLDERS)
@pytest.mark.parametrize(("op", "before"), [("c", None), ("r", None), ("u", {"id": 4})])
def test_the_placeholder_text_is_a_real_value_where_nothing_can_be_left_out(
    placeholder: Any, op: str, before: dict[str, Any] | None
) -> None:
    """Inserts and reads carry every value, and under REPLICA IDENTITY FULL (an update with
    its old row) Debezium sends unchanged TOASTed values too: there the text is data."""
    after = _raw_change(op, before, placeholder).after
    assert after is not None
    assert after["c_toast"] == placeholder


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_peek_op_agrees_with_decoding_or_abstains(encoding: str) -> None:
    """The consumer skips a snapshot read nobody takes on the op peeked from its bytes, so a
    peeked op is always the decoded one."""
    dec = decoder(encoding)
    peeked = []
    for r in records(encoding):
        if r.value is None:
            continue
        event = dec.decode(r.key, r.value, r.kafka, outbox=r.kafka.topic.startswith(OUTBOX))
        op = dec.peek_op(r.value)
        if op is not None:
            assert isinstance(event, Change)
            assert event.op.value == op
            peeked.append(op)
    if encoding == "avro":
        assert peeked == []  # the op is inside the binary body
    else:
        assert set(peeked) >= {"r", "c", "u", "d", "t", "m"}


def test_peek_op_is_not_fooled_by_a_column_named_op() -> None:
    update = next(r for r in records("json-noschema") if r.value and b'"op":"u"' in r.value).value
    assert update is not None
    body = json.loads(update)
    body["after"] = {"op": "r", **body["after"]}
    value = json.dumps(body, separators=(",", ":")).encode()
    assert b'"op":"r"' in value
    assert decoder("json-noschema").peek_op(value) == "u"
