"""Every PostgreSQL type with its edge values arrives exactly, in every encoding, on the real
stack: one table per type, rows written with SQL literals nobody here picked for convenience,
read by `cdc`'s consumer both as the decoded row and through a row model. A value Python's
type cannot hold arrives as `Unrepresentable`, never as a wrong value, and never stops the
change."""

from __future__ import annotations

import datetime as dt
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import pytest

from cdc import (
    MICROS,
    MILLIS,
    UNAVAILABLE,
    Change,
    Context,
    Row,
    Unavailable,
    Unrepresentable,
    on_change,
)
from cdc.routing import Router, handlers_of
from cdc.stack.probes import connect_superuser
from cdc.testing import RunningConsumer
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack

ENCODINGS = ("json", "json-noschema", "avro")
UTC = dt.UTC


def U(pg_type: str, text: str | None) -> Unrepresentable:
    return Unrepresentable(pg_type, text, None)


@dataclass(frozen=True)
class Case:
    """One column type: SQL literals, what the decoded row holds for each (encodings with a
    schema), and what a row model field of `annotation` reads in every encoding (default: the
    same)."""

    sql_type: str
    annotation: Any
    values: list[tuple[str, Any]]
    model_values: list[Any] | None = None
    noschema_values: list[Any] | None = None  # the model's reading in json-noschema


CASES = [
    Case("smallint", int, [("-32768", -32768), ("32767", 32767)]),
    Case("bigint", int, [("-9223372036854775808", -(2**63)), ("9223372036854775807", 2**63 - 1)]),
    Case("oid", int, [("4294967295", 4294967295)]),
    Case("boolean", bool, [("true", True), ("false", False)]),
    Case(
        "numeric(38,10)",
        Decimal,
        [
            ("12345678901234567890.0123456789", Decimal("12345678901234567890.0123456789")),
            ("-0.0000000001", Decimal("-0.0000000001")),
            ("0", Decimal("0E-10")),
        ],
    ),
    Case(
        "numeric",
        Decimal,
        [
            ("'NaN'", Decimal("NaN")),
            ("'Infinity'", Decimal("Infinity")),
            ("'-Infinity'", Decimal("-Infinity")),
            (
                "123456789012345678901234567890.123456789012345678901234567890",
                Decimal("123456789012345678901234567890.123456789012345678901234567890"),
            ),
            ("1e-100", Decimal("1E-100")),
            ("-7", Decimal("-7")),
        ],
    ),
    Case("numeric(5,2)", Decimal, [("1.5", Decimal("1.50"))]),
    Case(
        "numeric[]",
        list[Decimal | None],
        # (An array holding NaN or ±Infinity Debezium fails to read: it logs the error and
        # sends NULL. The README says so.)
        [("'{1.10,NULL,-0.5}'", [Decimal("1.10"), None, Decimal("-0.5")])],
    ),
    Case(
        "money",
        Decimal,
        [
            ("'1234.56'", Decimal("1234.56")),
            ("'-92233720368547758.08'", Decimal("-92233720368547758.08")),
        ],
    ),
    Case(
        "real",
        float,
        [
            ("'NaN'", math.nan),
            ("'Infinity'", math.inf),
            ("'-Infinity'", -math.inf),
            ("3.4e38", 3.4e38),
            ("'-0'", -0.0),
            ("0.1", 0.1),
        ],
    ),
    # JsonConverter writes a real in more digits than PostgreSQL (1.17549435E-38): with a
    # schema it is read back as PostgreSQL writes it; without one it stays as sent.
    Case("real", float, [("1.17549435e-38", 1.1754944e-38)], noschema_values=[1.17549435e-38]),
    Case(
        "double precision",
        float,
        [
            ("'NaN'", math.nan),
            ("'Infinity'", math.inf),
            ("'-Infinity'", -math.inf),
            ("1.7976931348623157e308", 1.7976931348623157e308),
            ("5e-324", 5e-324),
            ("'-0'", -0.0),
        ],
    ),
    Case(
        "date",
        dt.date | Unrepresentable,
        [
            ("'infinity'", dt.date.max),
            ("'-infinity'", dt.date.min),
            ("'4713-01-01 BC'", U("date", "-4712-01-01")),
            ("'5874897-12-31'", U("date", "+5874897-12-31")),
            ("'10000-01-01'", U("date", "+10000-01-01")),
            ("'9999-12-31'", dt.date(9999, 12, 31)),
            ("'0001-01-01'", dt.date(1, 1, 1)),
            ("'2024-02-29'", dt.date(2024, 2, 29)),
        ],
    ),
    Case(
        "time",
        Annotated[dt.time | Unrepresentable, MICROS],
        [
            ("'24:00:00'", U("time", "24:00:00")),
            ("'23:59:59.999999'", dt.time(23, 59, 59, 999999)),
            ("'00:00:00'", dt.time(0)),
        ],
    ),
    Case(
        "time(3)",
        Annotated[dt.time | Unrepresentable, MILLIS],
        [("'24:00:00'", U("time", "24:00:00")), ("'13:45:59.123'", dt.time(13, 45, 59, 123000))],
    ),
    Case(
        "timetz",
        dt.time,
        [
            ("'10:11:12.345678+05:30'", dt.time(4, 41, 12, 345678, tzinfo=UTC)),
            ("'00:00:00-15:59'", dt.time(15, 59, tzinfo=UTC)),
        ],
    ),
    Case(
        "timestamp",
        Annotated[dt.datetime | Unrepresentable, MICROS],
        [
            ("'infinity'", dt.datetime.max),
            ("'-infinity'", dt.datetime.min),
            ("'4713-01-01 00:00:00 BC'", U("timestamp", "-4712-01-01T00:00:00")),
            # Past Java's 64-bit microseconds: Debezium's number overflows, the value is lost.
            ("'294276-12-31 23:59:59.999999'", U("timestamp", None)),
            ("'10000-01-01'", U("timestamp", "+10000-01-01T00:00:00")),
            ("'0001-01-01'", dt.datetime(1, 1, 1)),
            ("'1999-12-31 23:59:59.999999'", dt.datetime(1999, 12, 31, 23, 59, 59, 999999)),
        ],
    ),
    Case(
        "timestamp(3)",
        Annotated[dt.datetime | Unrepresentable, MILLIS],
        [
            ("'infinity'", dt.datetime.max),
            ("'-infinity'", dt.datetime.min),
            ("'4713-01-01 00:00:00 BC'", U("timestamp", "-4712-01-01T00:00:00")),
            ("'2024-02-29 13:45:59.123'", dt.datetime(2024, 2, 29, 13, 45, 59, 123000)),
        ],
    ),
    Case(
        "timestamptz",
        dt.datetime | Unrepresentable,
        [
            ("'infinity'", dt.datetime.max.replace(tzinfo=UTC)),
            ("'-infinity'", dt.datetime.min.replace(tzinfo=UTC)),
            ("'4713-01-01 00:00:00+00 BC'", U("timestamptz", "-4712-01-01T00:00:00.000000Z")),
            ("'10000-01-01Z'", U("timestamptz", "+10000-01-01T00:00:00.000000Z")),
            ("'2024-06-30 22:00:00.5+02'", dt.datetime(2024, 6, 30, 20, 0, 0, 500000, tzinfo=UTC)),
        ],
    ),
    Case(
        "interval",
        dt.timedelta | Unrepresentable,
        [
            ("'178000000 years'", U("interval", "P178000000Y0M0DT0H0M0S")),
            ("'-178000000 years'", U("interval", "P-178000000Y0M0DT0H0M0S")),
            ("'1 mon'", dt.timedelta(days=30)),
            ("'1 day -1 second'", dt.timedelta(seconds=86399)),
            ("'-0.000001 seconds'", dt.timedelta(microseconds=-1)),
            ("'999999999 days'", dt.timedelta(days=999999999)),
        ],
    ),
    Case(
        "text",
        str,
        [
            # An insert leaves nothing out: the placeholder's text here is the row's value.
            ("'__debezium_unavailable_value'", "__debezium_unavailable_value"),
            ("''", ""),
            ("'héllo wörld ✓ 𝄞'", "héllo wörld ✓ 𝄞"),
        ],
    ),
    Case("char(3)", str, [("'ab'", "ab ")]),
    Case('"char"', str, [("'z'", "z")]),
    Case(
        "bytea",
        bytes,
        [
            ("'\\x00ff10'::bytea", b"\x00\xff\x10"),
            ("''::bytea", b""),
            ("'__debezium_unavailable_value'::bytea", b"__debezium_unavailable_value"),
        ],
    ),
    Case(
        "uuid",
        uuid.UUID,
        [
            (
                "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            )
        ],
    ),
    Case(
        "json",
        Any,
        [("'null'", None), ("'\"s\"'", "s")],
        # Without a schema nothing says a text is JSON: a field of `Any` keeps it as sent.
        noschema_values=["null", '"s"'],
    ),
    Case(
        "json",
        dict[str, Any] | list[Any],
        [("'[]'", []), ("'{\"a\": [1, 2.5, null]}'", {"a": [1, 2.5, None]})],
    ),
    Case("jsonb", dict[str, Any], [('\'{"k": {"n": true}}\'', {"k": {"n": True}})]),
    Case(
        "int[]",
        list[int | None],
        [("'{}'", []), ("'{NULL}'", [None]), ("'{1,NULL,3}'", [1, None, 3])],
    ),
    Case(
        "text[]",
        list[str | None] | Unrepresentable,
        [
            ('\'{a,"NULL",NULL,""}\'', ["a", "NULL", None, ""]),
            # Debezium sends a 2-D text array's rows as Java object names: nothing to recover.
            ("'{{a,NULL},{\"b c\",d}}'", U("array", None)),
        ],
    ),
    Case("inet", str, [("'192.168.0.1/24'", "192.168.0.1/24"), ("'::1'", "::1")]),
    Case("cidr", str, [("'10.0.0.0/8'", "10.0.0.0/8")]),
    Case("macaddr", str, [("'08:00:2b:01:02:03'", "08:00:2b:01:02:03")]),
    Case("int4range", str, [("'[1,5)'", "[1,5)"), ("'empty'", "empty")]),
    Case("tstzrange", str, [("'[2024-01-01,infinity)'", '["2024-01-01 00:00:00+00",infinity)')]),
    # Bit strings: Debezium's little-endian bytes (bit(1): a boolean).
    Case("bit(3)", bytes, [("B'101'", b"\x05")]),
    Case("varbit", bytes, [("B'1011001'", b"Y")]),
    Case("bit(1)", bool, [("B'1'", True)]),
    Case("xml", str, [("'<a>x</a>'", "<a>x</a>")]),
    Case("tsvector", str, [("'a fat cat'", "'a' 'cat' 'fat'")]),
    Case(
        "point",
        dict[str, Any],
        [
            (
                "'(1.5,2)'",
                {
                    "x": 1.5,
                    "y": 2.0,
                    "wkb": bytes.fromhex("0101000000000000000000f83f0000000000000040"),
                    "srid": None,
                },
            )
        ],
        noschema_values=[{"x": 1.5, "y": 2.0, "wkb": "AQEAAAAAAAAAAAD4PwAAAAAAAABA", "srid": None}],
    ),
    # Types Debezium does not know arrive as the bytes of their text (as it writes it).
    Case("line", bytes, [("'{1,2,3}'", b"{1.0,2.0,3.0}")]),
    Case("box", bytes, [("'((0,0),(1,1))'", b"(1.0,1.0),(0.0,0.0)")]),
    Case("lseg", bytes, [("'[(0,0),(1,1)]'", b"[(0.0,0.0),(1.0,1.0)]")]),
    Case("path", bytes, [("'[(0,0),(1,1)]'", b"[(0.0,0.0),(1.0,1.0)]")]),
    Case(
        "polygon",
        bytes,
        [("'((0,0),(1,1),(1,0))'", b"((0.0,0.0),(1.0,1.0),(1.0,0.0))")],
    ),
    Case("circle", bytes, [("'<(0,0),5>'", b"<(0.0,0.0),5.0>")]),
    Case("{prefix}_pair", bytes, [("ROW(1, 'a b')", b'(1,"a b")')]),
    Case("{prefix}_mood", str, [("'ok'", "ok")]),
    Case("{prefix}_positive", int, [("5", 5)]),
    Case("hstore", dict[str, str | None], [("'a=>1, b=>NULL'", {"a": "1", "b": None})]),
    Case("citext", str, [("'MiXed'", "MiXed")]),
]


def same(got: Any, want: Any) -> bool:
    """Equal, of the same type, and for floats and decimals the same digits (NaN is NaN, -0.0
    is not 0.0, 1.50 is not 1.5)."""
    if isinstance(want, Unrepresentable):
        return isinstance(got, Unrepresentable) and (got.pg_type, got.text) == (
            want.pg_type,
            want.text,
        )
    if type(got) is not type(want):
        return False
    if isinstance(want, float):
        return (math.isnan(got) and math.isnan(want)) or (got == want and repr(got) == repr(want))
    if isinstance(want, Decimal):
        return str(got) == str(want)
    if isinstance(want, list):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, dt.time | dt.datetime):
        return bool(got == want) and got.utcoffset() == want.utcoffset()
    return bool(got == want)


def create_types(pipeline: Pipeline) -> None:
    with connect_superuser(
        pipeline.stack.pg_host,
        pipeline.stack.pg_port,
        pipeline.stack.pg_superuser_password,
        pipeline.stack.app_database,
    ) as su:
        su.execute("CREATE EXTENSION IF NOT EXISTS hstore")
        su.execute("CREATE EXTENSION IF NOT EXISTS citext")
    pipeline.sql(f"CREATE TYPE {pipeline.id}_pair AS (a int, b text)")
    pipeline.sql(f"CREATE TYPE {pipeline.id}_mood AS ENUM ('sad', 'ok')")
    pipeline.sql(f"CREATE DOMAIN {pipeline.id}_positive AS int CHECK (VALUE > 0)")


def case_tables(pipeline: Pipeline, encoding: str) -> dict[str, Case]:
    """One table (id, n, v) per case, watched with FULL identity in ``encoding``; applied."""
    create_types(pipeline)
    tables = {}
    for i, case in enumerate(CASES):
        table = pipeline.table(f"type{i}")
        sql_type = case.sql_type.format(prefix=pipeline.id)
        pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, n int, v {sql_type})")
        tables[table] = case
    pipeline.write_file({t: {"replica_identity": "full"} for t in tables}, encoding=encoding)
    pipeline.apply()
    return tables


def model_values(case: Case, encoding: str) -> list[Any]:
    """What a field of the case's `annotation` reads from each of its values."""
    if encoding == "json-noschema" and case.noschema_values is not None:
        return case.noschema_values
    return case.model_values or [v for _, v in case.values]


def check_cases(
    pipeline: Pipeline,
    tables: dict[str, Case],
    encoding: str,
    models: dict[str, type[Row]],
    expected: Callable[[Case], list[Any]],
) -> list[str]:
    """Insert each case's values, update each row, and read every change with the table's
    model in ``models`` (a field `v`): every way a value or the model's reading of it
    (``expected``) differs from what it should be."""
    read: dict[tuple[str, int, str], Any] = {}  # (table, id, before/after): the model's value
    lock = threading.Lock()
    handlers = []
    for table in tables:

        def keep(change: Change[Any], ctx: Context, table: str = table) -> None:
            with lock:
                for side in ("before", "after"):
                    row = getattr(change, side)
                    if row is not None:
                        read[(table, row.id, side)] = row.v

        handlers += handlers_of(on_change(table, ops="cu", model=models[table])(keep))

    watched = pipeline.watched()
    config = pipeline.stack.settings(watched_tables=pipeline.file, group_id=pipeline.id)
    failures = []
    with RunningConsumer(config, watched, Router(handlers, watched.tables)) as consumer:
        for table, case in tables.items():
            for row_id, (literal, _) in enumerate(case.values):
                pipeline.sql(f"INSERT INTO {table} (id, v) VALUES ({row_id}, {literal})")
            # Under FULL identity the update carries the old row: `before` is read the same way.
            pipeline.sql(f"UPDATE {table} SET n = 1")
        for table, case in tables.items():
            for row_id, ((literal, want), want_model) in enumerate(
                zip(case.values, expected(case), strict=True)
            ):
                for op in ("c", "u"):
                    handled = consumer.wait_for(
                        table, op, lambda c, i=row_id: c.after is not None and c.after["id"] == i
                    )
                    where = f"{case.sql_type} {literal} ({op})"
                    if handled.parked:
                        failures.append(f"{where}: parked: {handled.parked}")
                        continue
                    change = handled.event
                    assert isinstance(change, Change)
                    sides = ("after",) if op == "c" else ("before", "after")
                    for side in sides:
                        row = getattr(change, side)
                        if encoding != "json-noschema" and not same(row["v"], want):
                            failures.append(f"{where} {side}: decoded {row['v']!r}, want {want!r}")
                        got = read.get((table, row_id, side), "<not read>")
                        if not same(got, want_model):
                            failures.append(
                                f"{where} {side}: model read {got!r}, want {want_model!r}"
                            )
    return failures


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_type_and_edge_value_arrives_exactly(pipeline: Pipeline, encoding: str) -> None:
    tables = case_tables(pipeline, encoding)
    models: dict[str, type[Row]] = {
        table: type(
            f"Model_{table}", (Row,), {"__annotations__": {"id": int, "v": case.annotation | None}}
        )
        for table, case in tables.items()
    }
    failures = check_cases(
        pipeline, tables, encoding, models, lambda case: model_values(case, encoding)
    )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_unchanged_toast_is_unavailable_only_where_postgresql_left_it_out(
    pipeline: Pipeline, encoding: str
) -> None:
    """REPLICA IDENTITY DEFAULT: an update leaving a TOASTed column alone does not carry it.
    FULL: every value arrives, and a real value equal to the placeholder text stays itself."""
    default, full = pipeline.table("dflt"), pipeline.table("full")
    for table in (default, full):
        pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, n int, big text, t text, b bytea)")
    pipeline.write_file({default: {}, full: {"replica_identity": "full"}}, encoding=encoding)
    pipeline.apply()

    class Toasty(Row):
        id: int
        big: str | Unavailable
        t: str | Unavailable
        b: bytes | Unavailable

    seen: dict[tuple[str, int], Toasty] = {}

    def keep(change: Change[Toasty], ctx: Context) -> None:
        assert change.after is not None
        seen[(change.table.split(".")[1], change.after.id)] = change.after

    handlers = handlers_of(
        on_change(full, ops="u", model=Toasty)(on_change(default, ops="u", model=Toasty)(keep))
    )
    watched = pipeline.watched()
    config = pipeline.stack.settings(watched_tables=pipeline.file, group_id=pipeline.id)
    big = "".join(uuid.uuid4().hex for _ in range(600))  # stored out of line: TOASTed
    placeholder = "__debezium_unavailable_value"
    with RunningConsumer(config, watched, Router(handlers, watched.tables)) as consumer:
        for table in (default, full):
            pipeline.sql(f"INSERT INTO {table} VALUES (1, 0, %s, 'x', 'y')", (big,))
            pipeline.sql(
                f"UPDATE {table} SET n = 1, t = %s, b = %s WHERE id = 1",
                (placeholder, placeholder.encode()),
            )
        for table in (default, full):
            consumer.wait_for(table, "u")
    d, f = seen[(default, 1)], seen[(full, 1)]
    assert d.big is UNAVAILABLE  # left out by PostgreSQL: never the placeholder as data
    assert f.big == big  # FULL: Debezium sends it
    assert (f.t, f.b) == (placeholder, placeholder.encode())  # a real value, kept
