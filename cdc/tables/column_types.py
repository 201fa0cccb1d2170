"""What each column of a table arrives as in a handler, read from PostgreSQL's catalog: the
Python type (as the README's table "PostgreSQL | a handler gets" says), whether it may be
NULL, TOASTed (so arrive unchanged as UNAVAILABLE) or hold values Python cannot (so arrive as
`Unrepresentable`), and the unit json-noschema needs for a `time` or `timestamp`."""

from __future__ import annotations

import datetime as dt
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

import psycopg

from cdc.events.fallback import Unrepresentable
from cdc.events.values import Unavailable

_INT = ("int2", "int4", "int8", "oid")
_TEXT = (
    "text",
    "varchar",
    "bpchar",
    "char",
    "xml",
    "tsvector",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "name",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
)


@dataclass(frozen=True)
class Arrives:
    """What a column's (or an array item's) values arrive as in a handler."""

    py: type  # the plain Python type; object: any value (json)
    source: str  # how a Row field declares it (names as `cdc models` imports them)
    unrepresentable: bool = False  # may arrive as cdc.Unrepresentable
    unit: str | None = None  # MICROS or MILLIS: how json-noschema counts it
    labels: tuple[str, ...] = ()  # an enum's
    enum: str | None = None  # an enum's type, schema.name
    item: Arrives | None = None  # an array's
    # Debezium sends it as text: an array of it may arrive as Unrepresentable (a
    # multi-dimensional one, whose rows Debezium sends as Java object names).
    text: bool = False
    # In json-noschema its raw form (a day count, base64...) is read by a Row field of its
    # type, but not inside a list: an array of it is declared list[Any] there.
    raw_in_lists: bool = False
    unsent: str | None = None  # why Debezium leaves the column out of every change
    note: str | None = None  # what else Debezium does to it

    def annotation(self, aliases: Mapping[str, str] | None = None) -> str:
        """The field's type, without `| Unavailable` or `| None`; ``aliases``: the names of
        enum types' Literals (by schema.name) to write instead of them."""
        if self.py is type(None):
            return "None"
        source = self.source
        if self.item is not None:
            source = f"list[{self.item.annotation(aliases)} | None]"
        elif self.enum is not None and aliases and self.enum in aliases:
            source = aliases[self.enum]
        plain = f"{source} | Unrepresentable" if self.unrepresentable else source
        return f"Annotated[{plain}, {self.unit}]" if self.unit else plain


@dataclass(frozen=True)
class ColumnType:
    sql: str  # format_type: `numeric(12,3)`, `timestamp(3) without time zone`
    arrives: Arrives
    nullable: bool
    toastable: bool  # a varlena type (typstorage not 'p'): may be stored out of line


_STR = Arrives(str, "str", text=True)
_DICT = Arrives(dict, "dict[str, Any]")
_SCALARS: dict[str, Arrives] = {
    **{name: Arrives(int, "int") for name in _INT},
    **dict.fromkeys(_TEXT, _STR),
    "numeric": Arrives(Decimal, "Decimal", text=True),
    "money": Arrives(Decimal, "Decimal", text=True),
    "float4": Arrives(float, "float"),
    "float8": Arrives(float, "float"),
    "bool": Arrives(bool, "bool"),
    "bytea": Arrives(bytes, "bytes", raw_in_lists=True),
    "uuid": Arrives(uuid.UUID, "UUID", text=True),
    # The parsed value with a schema (a dict, list, str, number or None), the text without.
    "json": Arrives(object, "Any", text=True),
    "jsonb": Arrives(object, "Any", text=True),
    "date": Arrives(dt.date, "date", unrepresentable=True, raw_in_lists=True),
    "timetz": Arrives(dt.time, "time", text=True),
    "timestamptz": Arrives(dt.datetime, "datetime", unrepresentable=True, text=True),
    "interval": Arrives(dt.timedelta, "timedelta", unrepresentable=True, text=True),
    "point": _DICT,
}
# Extension types Debezium knows by name, in whichever schema they were created.
_BY_NAME: dict[str, Arrives] = {
    "citext": _STR,
    "ltree": _STR,
    "hstore": Arrives(dict, "dict[str, str | None]", raw_in_lists=True),
    "geometry": _DICT,
    "geography": _DICT,
}
# Types Debezium does not know: the bytes of their text.
UNKNOWN = Arrives(bytes, "bytes", raw_in_lists=True)
# Arrays whose column Debezium leaves out of every change, by their item type.
_UNSENT_ARRAYS = frozenset({"name", "xml", "point", "money", "varbit", "interval"})


@dataclass(frozen=True)
class _PgType:
    name: str
    schema: str
    kind: str  # pg_type.typtype: b base, c composite, d domain, e enum, r range, m multirange
    base: int  # a domain's type
    base_typmod: int  # the typmod a domain gives its type
    element: int  # an array's item type (0: not an array)
    labels: tuple[str, ...]
    not_null: bool  # a domain's NOT NULL


_TYPE = (
    "SELECT t.typname::text, n.nspname::text, t.typtype, t.typbasetype, t.typtypmod, "
    "CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE 0 END, "
    "ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid "
    "ORDER BY e.enumsortorder), t.typnotnull "
    "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = %s"
)
_COLUMNS = (
    "SELECT a.attname::text, a.atttypid, a.atttypmod, a.attnotnull, "
    "format_type(a.atttypid, a.atttypmod), t.typstorage <> 'p' "
    "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
    "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
)


class _Catalog:
    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.conn = conn
        self.types: dict[int, _PgType] = {}

    def type(self, oid: int) -> _PgType:
        if oid not in self.types:
            row = self.conn.execute(_TYPE, (oid,)).fetchone()
            assert row is not None, f"no pg_type {oid}"
            name, schema, kind, base, base_typmod, element, labels, not_null = row
            self.types[oid] = _PgType(
                name, schema, str(kind), base, base_typmod, element, tuple(labels), not_null
            )
        return self.types[oid]

    def arrives(self, oid: int, typmod: int) -> tuple[Arrives, bool]:
        """What a value of the type arrives as, and whether a domain forbids NULL."""
        t = self.type(oid)
        if t.kind == "d":
            base, not_null = self.arrives(t.base, t.base_typmod)
            return base, not_null or t.not_null
        if t.element:
            return self._array(self.type(t.element), typmod), False
        return scalar(t.name, t.schema, t.kind, typmod, t.labels), False

    def _array(self, t: _PgType, typmod: int) -> Arrives:
        """What an array of ``t`` arrives as; Debezium knows fewer types inside an array."""
        builtin = t.name if t.schema == "pg_catalog" else None
        if builtin in _UNSENT_ARRAYS:
            return Arrives(object, "Any", unsent=f"Debezium does not send arrays of {t.name}")
        if builtin == "bit":
            return Arrives(type(None), "None", note="Debezium sends every bit array as NULL")
        # It does not look through a domain inside an array: the bytes of the items' text.
        item = UNKNOWN if t.kind == "d" else scalar(t.name, t.schema, t.kind, typmod, t.labels)
        source = f"list[{item.annotation()} | None]"
        return Arrives(list, source, unrepresentable=item.text, item=item)


def scalar(name: str, schema: str, kind: str, typmod: int, labels: tuple[str, ...]) -> Arrives:
    """A value of a type that is neither a domain nor an array; ``typmod`` -1: none given."""
    if kind == "e":
        literal = f"Literal[{', '.join(map(quoted, labels))}]"
        return Arrives(str, literal, labels=labels, text=True, enum=f"{schema}.{name}")
    if name in _BY_NAME:
        return _BY_NAME[name]
    if schema != "pg_catalog":
        return UNKNOWN
    if name in ("bit", "varbit"):
        return Arrives(bool, "bool") if typmod == 1 else UNKNOWN
    if name in ("time", "timestamp"):
        # Debezium's adaptive precision: milliseconds up to 3 digits, else microseconds.
        unit = "MILLIS" if 0 <= typmod <= 3 else "MICROS"
        py = dt.time if name == "time" else dt.datetime
        return Arrives(py, py.__name__, unrepresentable=True, unit=unit, raw_in_lists=True)
    return _SCALARS.get(name, UNKNOWN)


def read_column_types(
    conn: psycopg.Connection[tuple[Any, ...]], relation: int
) -> dict[str, ColumnType]:
    """Every column of the table (pg_class oid ``relation``), in order."""
    catalog = _Catalog(conn)
    out = {}
    for name, oid, typmod, not_null, sql, toastable in conn.execute(_COLUMNS, (relation,)):
        arrives, domain_not_null = catalog.arrives(oid, typmod)
        out[str(name)] = ColumnType(
            str(sql), arrives, not (not_null or domain_not_null), bool(toastable)
        )
    return out


def quoted(text: str) -> str:
    """A string literal as ruff format writes it: in double quotes unless that takes more
    escapes."""
    python = repr(text)
    if python.startswith('"') or ('"' in text and "'" not in text):
        return python
    return '"' + python[1:-1].replace("\\'", "'").replace('"', '\\"') + '"'


# What a field may declare for a column that arrives as each type (pydantic converts).
_HOLDERS: dict[type, tuple[type, ...]] = {
    int: (int, float, Decimal),
    Decimal: (Decimal, float),
    float: (float, Decimal),
    dict: (dict, Mapping),
    list: (list, tuple, set, frozenset, Sequence),
}
# The types whose fields we judge; a field of another type (an Enum, a pydantic model, an
# IP address...) may well take the value: it is not reported.
_KNOWN = frozenset(
    {int, float, Decimal, bool, str, bytes, uuid.UUID, dict, Mapping, list, tuple, set}
    | {frozenset, Sequence, dt.date, dt.time, dt.datetime, dt.timedelta}
)


def holds(annotation: Any, arrives: Arrives) -> bool:
    """Whether a field declared ``annotation`` can take what the column arrives as (a value,
    not NULL, UNAVAILABLE or Unrepresentable: those are its own choice)."""
    if arrives.py in (object, type(None)):
        return True
    plain: list[Any] = []
    literals: set[Any] = set()
    _members(annotation, plain, literals)
    if any(t in (Any, object) or (typing.get_origin(t) or t) not in _KNOWN for t in plain):
        return True
    holders = _HOLDERS.get(arrives.py, (arrives.py,))
    if arrives.labels:
        if set(arrives.labels) <= literals:
            return True
    elif any(isinstance(v, holders) for v in literals):
        return True  # a column narrowed to some of its values: that is the field's business
    for t in plain:
        origin = typing.get_origin(t) or t
        if origin not in holders:
            continue
        items = typing.get_args(t)
        if arrives.item is None or not items or holds(items[0], arrives.item):
            return True
    return False


def _members(annotation: Any, plain: list[Any], literals: set[Any]) -> None:
    """The types a field's annotation is made of, looking through Annotated and unions; the
    values of its Literals apart."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        _members(typing.get_args(annotation)[0], plain, literals)
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            _members(arg, plain, literals)
    elif origin is Literal:
        literals.update(typing.get_args(annotation))
    elif annotation not in (None, type(None), Unavailable, Unrepresentable):
        plain.append(annotation)
