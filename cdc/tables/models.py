"""``cdc models``: one `cdc.Row` class per watched table, from PostgreSQL's catalog.

Each field says what its column arrives as in a handler (`column_types`): `| None` where
the column may be NULL (and, under a replica identity other than FULL, wherever a delete's
old row leaves it out: every column but the key), `| Unavailable` where a TOASTed value an
update leaves alone is left out of the change, `| Unrepresentable` where a value Python's
type cannot hold may arrive, and the unit json-noschema needs for a `time` or `timestamp`.
Excluded and generated columns and the arrays Debezium never sends, which no change carries,
are named in comments only."""

from __future__ import annotations

import keyword
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from cdc.partition_check import identity_name, off_identity
from cdc.tables.column_types import ColumnType, quoted
from cdc.tables.config import Encoding, ReplicaIdentity, TableOptions, WatchedTables
from cdc.tables.live import LiveTable, read_table

_WIDTH = 100  # ruff format's line length in this project, and a common one
# Where each name a model may use comes from, in the order the imports are written.
_IMPORTS = {
    "datetime": ("date", "datetime", "time", "timedelta"),
    "decimal": ("Decimal",),
    "typing": ("Annotated", "Any", "Literal"),
    "uuid": ("UUID",),
    "cdc": ("MICROS", "MILLIS", "Row", "Unavailable", "Unrepresentable"),
}
_IMPORTED = frozenset(name for names in _IMPORTS.values() for name in names)


@dataclass(frozen=True)
class TableModel:
    """A watched table as the catalog describes it (read with column types)."""

    name: str  # schema.table
    table: LiveTable
    options: TableOptions

    @property
    def whole_rows(self) -> bool:
        """Whether PostgreSQL logs whole old rows: the file and the table (and each of its
        partitions) say REPLICA IDENTITY FULL. Only then is an unchanged TOASTed value sent."""
        return (
            self.options.replica_identity is ReplicaIdentity.FULL
            and self.table.replica_identity == "f"
            and not off_identity(self.table, ReplicaIdentity.FULL)
        )


def table_models(
    conn: psycopg.Connection[tuple[Any, ...]], watched: WatchedTables
) -> tuple[list[TableModel], list[str]]:
    """The watched tables that exist, read with their column types; and those that do not."""
    found, missing = [], []
    for t in watched.table_names():
        live = read_table(conn, t, types=True)
        if live is None:
            missing.append(str(t))
        else:
            found.append(TableModel(str(t), live, watched.tables[str(t)]))
    return found, missing


def class_names(tables: Iterable[str]) -> dict[str, str]:
    """schema.table -> a class name: the table's name in CamelCase, unique among them and
    apart from the names the models import (the schema's name first where two clash)."""
    return _names(tables, set(_IMPORTED))


def _camel(identifier: str) -> str:
    camel = "".join(part[:1].upper() + part[1:] for part in identifier.split("_"))
    return camel if camel.isidentifier() else f"T{camel}"


def render(
    models: Sequence[TableModel], file: str = "cdc.yaml", encoding: Encoding = Encoding.JSON
) -> str:
    """The Python module of ``models``' classes (``file``: the watched-tables file, named in
    the module's docstring; ``encoding``: its topics', which decides how some arrays are
    declared)."""
    names = class_names(m.name for m in models)
    raw = encoding is Encoding.JSON_NO_SCHEMA
    # Each enum type's Literal once, named after the type: `Mood = Literal["sad", "ok"]`.
    enums = {
        arrives.enum: arrives.labels
        for m in models
        for column, ctype in m.table.types.items()
        if _left_out(m, column, ctype, file) is None
        for arrives in (ctype.arrives, ctype.arrives.item)
        if arrives is not None and arrives.enum is not None
    }
    aliases = _names(enums, set(names.values()) | _IMPORTED)
    annotations: list[str] = []
    classes = [_class(m, names[m.name], file, raw, aliases, annotations) for m in models]
    defined = [_alias(aliases[enum], labels) for enum, labels in enums.items()]
    used = {word for text in annotations + defined for word in re.findall(r"\w+", text)}
    used |= {"Row"} if models else set()
    head = [f'"""Row models of the tables {file} watches, written by `cdc models`."""', ""]
    for module, wanted in _IMPORTS.items():
        if module == "cdc":
            head.append("")
        chosen = [n for n in wanted if n in used]
        if chosen:
            head.append(f"from {module} import {', '.join(chosen)}")
    body = ["\n\n" + "".join(defined)] if defined else []
    body += [f"\n\n{c}" for c in classes]
    return "\n".join(head) + "\n" + "".join(body)


def _names(enums: Iterable[str], taken: set[str]) -> dict[str, str]:
    """schema.name of each enum type -> the name of its Literal, like `class_names`."""
    enums = list(enums)
    plain = [_camel(e.split(".")[1]) for e in enums]
    out = {}
    for enum, camel in zip(enums, plain, strict=True):
        name = camel
        if name in taken or plain.count(camel) > 1:
            name = _camel(enum.split(".")[0]) + camel
        out[enum] = name = _unique(name, taken)
        taken.add(name)
    return out


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}{n}", n + 1
    return candidate


def _alias(name: str, labels: Sequence[str]) -> str:
    """``name = Literal[...]`` as ruff format writes it: on one line, else the labels on one
    line of their own, else one a line."""
    items = [quoted(label) for label in labels]
    line = f"{name} = Literal[{', '.join(items)}]"
    if len(line) <= _WIDTH:
        return line + "\n"
    if len(inner := f"    {', '.join(items)}") <= _WIDTH:
        return f"{name} = Literal[\n{inner}\n]\n"
    return f"{name} = Literal[\n" + "".join(f"    {item},\n" for item in items) + "]\n"


def _class(
    model: TableModel,
    class_name: str,
    file: str,
    raw: bool,
    aliases: Mapping[str, str],
    annotations: list[str],
) -> str:
    """The class's source (``raw``: for json-noschema; ``aliases``: enums' Literals by type);
    the annotations of its fields added to ``annotations``."""
    whole = model.whole_rows
    identity = identity_name(model.table.replica_identity)
    about = f"{model.name}, REPLICA IDENTITY {identity}"
    if model.options.replica_identity.name != identity:
        about += f" ({file} declares {model.options.replica_identity.name})"
    if whole:
        about += "."
    else:
        about += (
            ": a delete's old row has only the key, so every other field takes None, and a "
            "TOASTed value an update leaves alone arrives as UNAVAILABLE."
        )
    doc = textwrap.wrap(about, _WIDTH - 4 - 3)
    lines = [f"class {class_name}(Row):", f'    """{doc[0]}']
    lines += [f"    {line}" for line in doc[1:]]
    lines[-1] += '"""'
    lines.append("")
    for column, ctype in model.table.types.items():
        if (why := _left_out(model, column, ctype, file)) is not None:
            lines.append(f"    # {why}")
            continue
        # A delete's old row has the primary key under DEFAULT identity (the index's columns
        # under USING INDEX, nothing under NOTHING).
        key = column in model.table.primary_key and identity == "DEFAULT"
        annotations.append(_annotation(ctype, whole, key, raw, aliases))
        lines += _field(column, annotations[-1], _note(ctype, raw))
    return "\n".join(lines) + "\n"


def _left_out(model: TableModel, column: str, ctype: ColumnType, file: str) -> str | None:
    """Why a column is no field of the model (a comment), or None."""
    if column in model.options.exclude_columns:
        return f"{column} ({ctype.sql}): excluded in {file}, never sent"
    if column in model.table.generated:
        return f"{column} ({ctype.sql}): generated, never in a change"
    if ctype.arrives.unsent:
        return f"{column} ({ctype.sql}): {ctype.arrives.unsent}"
    if not _field_name(column):
        return f"{column!r} ({ctype.sql}): not a field name; declare it with an alias"
    return None


def _annotation(
    ctype: ColumnType, whole_rows: bool, key: bool, raw: bool, aliases: Mapping[str, str]
) -> str:
    """The field's type for a column: ``whole_rows``, the table logs whole old rows; ``key``,
    the column is in the primary key; ``raw``, in json-noschema."""
    arrives = ctype.arrives
    if arrives.py is type(None):
        return "None"
    parts = [arrives.annotation(aliases)]
    if raw and arrives.item is not None and arrives.item.raw_in_lists:
        parts = ["list[Any] | Unrepresentable" if arrives.unrepresentable else "list[Any]"]
    if ctype.toastable and not whole_rows:
        parts.append("Unavailable")
    if ctype.nullable or not (whole_rows or key):
        parts.append("None")
    return " | ".join(parts)


def _field_name(column: str) -> bool:
    """Whether a column's name can be a Row field's: pydantic takes a leading underscore for
    a private attribute."""
    return column.isidentifier() and not keyword.iskeyword(column) and not column.startswith("_")


def _note(ctype: ColumnType, raw: bool) -> str | None:
    """What the field's type does not say: a numeric's precision and scale, JSON's form, an
    array's items json-noschema leaves raw, what Debezium does to it."""
    sql, arrives = ctype.sql, ctype.arrives
    if arrives.note:
        return f"{sql}: {arrives.note}"
    if raw and arrives.item is not None and arrives.item.raw_in_lists:
        return f"{sql}: json-noschema's items, as Debezium encodes them"
    if sql.startswith("numeric"):
        return sql
    if sql in ("json", "jsonb"):
        return f"{sql} (json-noschema: its text, unless declared dict or list)"
    return None


def _field(column: str, annotation: str, note: str | None) -> list[str]:
    line = f"    {column}: {annotation}"
    out = []
    if note and len(line) + 2 + len(note) + 2 <= _WIDTH:
        line += f"  # {note}"
    elif note:
        out.append(f"    # {note}")
    if len(line) > _WIDTH and not annotation.isidentifier():
        # As ruff format writes it.
        line = f"    {column}: (\n        {annotation}\n    )"
    out.append(line)
    return out
