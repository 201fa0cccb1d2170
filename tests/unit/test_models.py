"""`cdc models`' rendering from hand-built catalog descriptions, and `cdc check` on a model's
field types: the README's type table, nullability under each replica identity, UNAVAILABLE,
Unrepresentable, units, names, and the module's form (ruff format leaves it as it is)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest

from cdc import MICROS, MILLIS, UNAVAILABLE, Change, Row, Unavailable
from cdc.check import ConnectorState, LiveState, LiveTable, Severity, compare
from cdc.events import Unrepresentable
from cdc.routing import handlers_of, on_change
from cdc.tables.column_types import UNKNOWN, Arrives, ColumnType, holds, scalar
from cdc.tables.config import Encoding, parse_watched_tables
from cdc.tables.models import TableModel, class_names, render

WATCHED = parse_watched_tables(
    """
tables:
  shop.orders: {exclude_columns: [secret]}
  shop.events: {replica_identity: full}
"""
)


def pg(name: str, typmod: int = -1, *, nullable: bool = True, toastable: bool = False) -> Any:
    return ColumnType(name, scalar(name, "pg_catalog", "b", typmod, ()), nullable, toastable)


def array(item: ColumnType) -> ColumnType:
    i = item.arrives
    arrives = Arrives(list, f"list[{i.annotation()} | None]", unrepresentable=i.text, item=i)
    return ColumnType(f"{item.sql}[]", arrives, True, True)


MOOD = ColumnType("shop.mood", scalar("mood", "shop", "e", -1, ("sad", "it's")), True, False)
ORDERS = {
    "id": pg("int8", nullable=False),
    "total": ColumnType("numeric(12,2)", scalar("numeric", "pg_catalog", "b", -1, ()), False, True),
    "placed_at": pg("timestamp", 3, nullable=False),
    "ships_on": pg("date"),
    "at": pg("time"),
    "notes": pg("text", nullable=False, toastable=True),
    "mood": MOOD,
    "tags": array(pg("text", toastable=True)),
    "doc": pg("jsonb", toastable=True),
    "secret": pg("text", toastable=True),
    "net": pg("int4"),
    "from": pg("int4"),
    "days": array(pg("date")),
    "spans": ColumnType("interval[]", Arrives(object, "Any", unsent="not sent"), True, True),
    "flags": ColumnType("bit(3)[]", Arrives(type(None), "None", note="always NULL"), False, True),
}


def orders(identity: str = "d") -> LiveTable:
    return LiveTable(
        identity,
        frozenset({"id"}),
        frozenset(ORDERS),
        generated=frozenset({"net"}),
        types=ORDERS,
    )


EVENTS = {
    "id": pg("uuid", nullable=False),
    "body": pg("bytea", nullable=False, toastable=True),
    "took": pg("interval", nullable=False),
    "at": pg("timestamptz", nullable=False),
}


def models(orders_identity: str = "d", events_identity: str = "f") -> list[TableModel]:
    return [
        TableModel("shop.orders", orders(orders_identity), WATCHED.tables["shop.orders"]),
        TableModel(
            "shop.events",
            LiveTable(events_identity, frozenset({"id"}), frozenset(EVENTS), types=EVENTS),
            WATCHED.tables["shop.events"],
        ),
    ]


EXPECTED = '''\
"""Row models of the tables cdc.yaml watches, written by `cdc models`."""

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from cdc import MICROS, MILLIS, Row, Unavailable, Unrepresentable


Mood = Literal["sad", "it's"]


class Orders(Row):
    """shop.orders, REPLICA IDENTITY DEFAULT: a delete's old row has only the key, so every other
    field takes None, and a TOASTed value an update leaves alone arrives as UNAVAILABLE."""

    id: int
    total: Decimal | Unavailable | None  # numeric(12,2)
    placed_at: Annotated[datetime | Unrepresentable, MILLIS] | None
    ships_on: date | Unrepresentable | None
    at: Annotated[time | Unrepresentable, MICROS] | None
    notes: str | Unavailable | None
    mood: Mood | None
    tags: list[str | None] | Unrepresentable | Unavailable | None
    doc: Any | Unavailable | None  # jsonb (json-noschema: its text, unless declared dict or list)
    # secret (text): excluded in cdc.yaml, never sent
    # net (int4): generated, never in a change
    # 'from' (int4): not a field name; declare it with an alias
    days: list[date | Unrepresentable | None] | Unavailable | None
    # spans (interval[]): not sent
    flags: None  # bit(3)[]: always NULL


class Events(Row):
    """shop.events, REPLICA IDENTITY FULL."""

    id: UUID
    body: bytes
    took: timedelta | Unrepresentable
    at: datetime | Unrepresentable
'''


def test_render_follows_the_type_table_and_the_identity() -> None:
    assert render(models()) == EXPECTED


def test_json_noschema_arrays_of_raw_items_are_lists_of_any() -> None:
    text = render(models(), encoding=Encoding.JSON_NO_SCHEMA)
    assert "    days: list[Any] | Unavailable | None  # date[]: json-noschema's items, as " in text
    assert "    tags: list[str | None] | Unrepresentable | Unavailable | None\n" in text


def enum(name: str, *labels: str) -> ColumnType:
    return ColumnType(name, scalar(name, "shop", "e", -1, labels), True, False)


def test_the_module_is_as_ruff_formats_it(tmp_path: Path) -> None:
    long = {
        f"c_{'x' * 80}": pg("timestamp"),
        "n": pg("numeric", 0),
        "status": enum("status", *(f"state_{i}" for i in range(8))),
        "statuses": array(enum("status", *(f"state_{i}" for i in range(8)))),
        "phase": enum("phase", *(f"phase_number_{i}" for i in range(20))),
        **EVENTS,
    }
    table = LiveTable("d", frozenset({"id"}), frozenset(long), types=long)
    path = tmp_path / "models.py"
    path.write_text(
        render([*models(), TableModel("shop.long", table, WATCHED.tables["shop.orders"])])
    )
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run(
        [str(ruff), "format", "--check", "--diff", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def load(text: str) -> dict[str, Any]:
    scope: dict[str, Any] = {"__name__": "generated"}
    # As a module of its own: not under this file's `from __future__ import annotations`.
    exec(compile(text, "generated.py", "exec", dont_inherit=True), scope)  # noqa: S102
    return scope


def test_the_models_read_rows() -> None:
    scope = load(render(models()))
    orders, events = scope["Orders"], scope["Events"]
    # Every column is in a change, NULL or not (a delete's old row under DEFAULT: all but the
    # key NULL); json-noschema's raw forms here, which the units read.
    nulls = dict.fromkeys(orders.model_fields)
    raw = {
        **{"id": 1, "total": "1.50", "placed_at": 1709214359123, "at": 86399999999},
        **{"notes": UNAVAILABLE, "mood": "it's", "tags": ["a", None], "doc": '{"a": 1}'},
    }
    row = orders.model_validate(nulls | raw)
    assert row.placed_at == dt.datetime(2024, 2, 29, 13, 45, 59, 123000)
    assert row.at == dt.time(23, 59, 59, 999999)
    assert (row.total, row.notes, row.doc) == (Decimal("1.50"), UNAVAILABLE, '{"a": 1}')
    assert orders.model_validate(nulls | {"id": 1}).notes is None
    with pytest.raises(ValueError, match="mood"):
        orders.model_validate(nulls | {"id": 1, "mood": "happy"})
    event = {
        "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "took": "P1D",
        "at": "2024-01-01T00:00:00Z",
    }
    assert events.model_validate(event | {"body": "AP8Q"}).body == b"\x00\xff\x10"
    with pytest.raises(ValueError, match="body"):  # FULL identity: the value is always there
        events.model_validate(event | {"body": UNAVAILABLE})


def test_unavailable_unless_the_file_and_the_table_are_full() -> None:
    assert "body: bytes | Unavailable | None" in render(models(events_identity="d"))
    partitioned = dataclasses.replace(
        models()[1].table, partitioned=True, partitions={("shop", "events_1"): "d"}
    )
    text = render([TableModel("shop.events", partitioned, WATCHED.tables["shop.events"])])
    assert "shop.events, REPLICA IDENTITY FULL: a delete's old row" in text
    assert "body: bytes | Unavailable | None" in text
    declared_default = TableModel("shop.orders", orders("f"), WATCHED.tables["shop.orders"])
    text = render([declared_default])
    assert "shop.orders, REPLICA IDENTITY FULL (cdc.yaml declares DEFAULT): a delete's" in text
    assert "notes: str | Unavailable | None" in text


@pytest.mark.parametrize(
    ("name", "typmod", "annotation"),
    [
        ("int2", -1, "int"),
        ("oid", -1, "int"),
        ("money", -1, "Decimal"),
        ("float4", -1, "float"),
        ("bool", -1, "bool"),
        ("bit", 1, "bool"),
        ("bit", 3, "bytes"),
        ("varbit", -1, "bytes"),
        ("bpchar", 3, "str"),
        ("char", -1, "str"),
        ("xml", -1, "str"),
        ("tstzrange", -1, "str"),
        ("inet", -1, "str"),
        ("point", -1, "dict[str, Any]"),
        ("box", -1, "bytes"),
        ("timetz", -1, "time"),
        ("time", 0, "Annotated[time | Unrepresentable, MILLIS]"),
        ("time", 4, "Annotated[time | Unrepresentable, MICROS]"),
        ("timestamp", -1, "Annotated[datetime | Unrepresentable, MICROS]"),
        ("timestamp", 6, "Annotated[datetime | Unrepresentable, MICROS]"),
    ],
)
def test_catalog_types(name: str, typmod: int, annotation: str) -> None:
    assert scalar(name, "pg_catalog", "b", typmod, ()).annotation() == annotation


def test_extension_and_unknown_types() -> None:
    assert scalar("hstore", "public", "b", -1, ()).source == "dict[str, str | None]"
    assert scalar("citext", "ext", "b", -1, ()).source == "str"
    assert scalar("pair", "public", "c", -1, ()) is UNKNOWN
    assert scalar("text", "public", "b", -1, ()) is UNKNOWN  # not pg_catalog's text


def test_each_enum_is_one_literal_named_after_its_type() -> None:
    orders = dataclasses.replace(
        models()[0].table, types={"id": pg("int4"), "a": MOOD, "b": array(MOOD)}
    )
    text = render([TableModel("shop.mood", orders, WATCHED.tables["shop.orders"])])
    assert "class Mood(Row):" in text
    assert text.count("ShopMood = Literal[") == 1
    assert "    a: ShopMood | None\n" in text
    assert "    b: list[ShopMood | None] | Unrepresentable | Unavailable | None\n" in text
    assert load(text)["Mood"].model_validate({"id": 1, "a": "sad", "b": ["it's"]}).b == ["it's"]


def test_class_names_are_unique_and_apart_from_the_imports() -> None:
    assert class_names(["public.users", "audit.users", "public.row", "public.order_lines"]) == {
        "public.users": "PublicUsers",
        "audit.users": "AuditUsers",
        "public.row": "PublicRow",
        "public.order_lines": "OrderLines",
    }
    assert class_names(["public._1x"]) == {"public._1x": "T1x"}


TIMESTAMPTZ = scalar("timestamptz", "pg_catalog", "b", -1, ())
INTS = Arrives(list, "list[int | None]", item=scalar("int4", "pg_catalog", "b", -1, ()))


@pytest.mark.parametrize(
    ("annotation", "arrives", "held"),
    [
        (str, TIMESTAMPTZ, False),
        (dt.datetime | Unrepresentable | None, TIMESTAMPTZ, True),
        (dt.date, TIMESTAMPTZ, False),
        (int, pg("text").arrives, False),
        (Literal["a"], pg("text").arrives, True),
        (Literal[-1, 1], pg("int2").arrives, True),
        (Literal["a"], pg("int2").arrives, False),
        (str, MOOD.arrives, True),
        (Literal["sad"], MOOD.arrives, False),
        (Literal["sad", "it's"] | None, MOOD.arrives, True),
        (float, pg("int8").arrives, True),
        (list[int | None], INTS, True),
        (list[str], INTS, False),
        (list[Any], INTS, True),
        (dict[str, Any], pg("jsonb").arrives, True),
        (Annotated[dt.datetime, MICROS], pg("timestamp").arrives, True),
        (ipaddress.IPv4Interface, pg("inet").arrives, True),  # not ours to judge
        (str, pg("uuid").arrives, False),
    ],
)
def test_holds(annotation: Any, arrives: Arrives, held: bool) -> None:
    assert holds(annotation, arrives) is held


class Order(Row):
    id: int
    spans: list[dt.timedelta] | None  # never sent
    note: str | Unavailable | None  # renamed: the column is notes
    total: int | None  # numeric arrives as a Decimal
    placed_at: Annotated[dt.datetime, MICROS] | None  # timestamp(3): MILLIS
    at: dt.time | None  # no unit: json-noschema cannot read it
    ships_on: dt.date | Unrepresentable | None


def order_findings(encoding: str = "json", ops: str = "c") -> list[tuple[Severity, str]]:
    watched = WATCHED.model_copy(
        update={"connector": WATCHED.connector.model_copy(update={"encoding": Encoding(encoding)})}
    )

    def react(change: Change[Order], ctx: object) -> None:
        print(change.after)

    state = LiveState(ConnectorState("", {}, None), None, {"shop.orders": orders()})
    report = compare(
        handlers_of(on_change("shop.orders", ops=ops, model=Order)(react)), watched, state
    )
    subject = f"model {__name__}.Order (shop.orders)"
    return [(f.severity, f.problem) for f in report.findings if f.subject == subject]


def test_check_reports_renames_types_and_units() -> None:
    assert order_findings() == [
        (
            Severity.ERROR,
            "field 'spans' reads column 'spans' (interval[]), which no change carries: not sent",
        ),
        (
            Severity.ERROR,
            "field 'note' reads column 'note', which shop.orders does not have: "
            "renamed to 'notes'?",
        ),
        (
            Severity.ERROR,
            "field 'total' is declared int | None, but column 'total' (numeric(12,2)) arrives "
            "as Decimal",
        ),
        (
            Severity.WARNING,
            "field 'placed_at' reads microseconds, but Debezium counts timestamp in "
            "milliseconds (read only in json-noschema)",
        ),
    ]
    noschema = order_findings("json-noschema")
    assert (
        Severity.ERROR,
        "field 'at' has no unit, which json-noschema needs for time (microseconds)",
    ) in noschema
    assert (
        Severity.ERROR,
        "field 'placed_at' reads microseconds, but Debezium counts timestamp in milliseconds",
    ) in noschema
    assert MILLIS.name == "milliseconds"


def test_check_warns_of_fields_rejecting_unavailable_in_updates() -> None:
    warning = (
        Severity.WARNING,
        "handler tests.unit.test_models.order_findings.<locals>.react takes updates, but cdc.yaml "
        "declares shop.orders with replica identity default: a TOASTed value an update leaves "
        "alone arrives as UNAVAILABLE, which total reject(s)",
    )
    assert warning in order_findings(ops="u")
    assert warning not in order_findings(ops="cd")
