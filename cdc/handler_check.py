"""``cdc check`` on the handlers: does each get what it reads from its table (old rows, the
columns its row model declares), and does each have a table or an outbox feeding it?"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel

from cdc.events import Op
from cdc.events.rows import MICROS, MILLIS, TimeUnit
from cdc.events.values import Unavailable
from cdc.findings import Finding, Severity, apply_fix
from cdc.partition_check import identity_name, off_identity
from cdc.routing.declared import EventHandler, TableHandler
from cdc.tables.column_types import ColumnType, holds
from cdc.tables.config import Encoding, ReplicaIdentity, TableOptions, WatchedTables
from cdc.tables.live import LiveTable


def event_handler_findings(
    handlers: Sequence[EventHandler], watched: WatchedTables, file: str
) -> list[Finding]:
    if not handlers or watched.outbox is not None:
        return []
    return [
        Finding(
            Severity.ERROR,
            "outbox",
            f"events are handled by {', '.join(h.name for h in handlers)} but {file} declares "
            "no outbox: Debezium routes no events, so they never run",
            f"add `outbox: {{table: public.outbox}}` to {file}, then {apply_fix(file)}",
        )
    ]


def handler_findings(
    handlers: Sequence[TableHandler],
    watched: WatchedTables,
    tables: Mapping[str, LiveTable] | None,
    file: str,
    whole: frozenset[str] = frozenset(),
) -> list[Finding]:
    """``tables`` is None when the database could not be read; ``whole``: the tables
    handlers of whole transactions take."""
    findings = []
    by_table: dict[str, list[TableHandler]] = defaultdict(list)
    for handler in handlers:
        by_table[handler.table].append(handler)
    for name, group in by_table.items():
        options = watched.tables.get(name)
        if options is None:
            findings.append(
                Finding(
                    Severity.ERROR,
                    name,
                    f"handled by {', '.join(h.name for h in group)} but not in {file}: "
                    "Debezium does not capture it, so they never run",
                    f"add `{name}: {{}}` under `tables:` in {file}, then {apply_fix(file)}",
                )
            )
            continue
        table = None if tables is None else tables.get(name)
        if tables is not None and table is None:
            continue  # reported as a missing table
        for handler in group:
            findings += _handler(handler, name, watched, table, file)
    for name in sorted(watched.tables.keys() - by_table.keys() - whole):
        findings.append(
            Finding(
                Severity.WARNING,
                name,
                f"captured (in {file}) but no handler reacts to its changes",
                f'add a handler with `@on_change("{name}")`, or remove `{name}` from '
                f"`tables:` in {file} and {apply_fix(file)}",
            )
        )
    return findings


def _handler(
    handler: TableHandler,
    name: str,
    watched: WatchedTables,
    table: LiveTable | None,
    file: str,
) -> list[Finding]:
    """What one handler of a watched table needs from it; ``table`` None: not known."""
    options = watched.tables[name]
    findings = []
    not_full = _not_full(name, options, table, file)
    if not_full is not None and handler.reads_before and handler.ops & {Op.UPDATE, Op.DELETE}:
        why, fix = not_full
        if Op.UPDATE in handler.ops:
            severity, consequence = Severity.ERROR, "an update carries no old row"
        else:
            severity, consequence = Severity.WARNING, "a delete's old row has only the key"
        findings.append(
            Finding(
                severity,
                f"handler {handler.name}",
                f"reads `before`, but {why}: {consequence}",
                fix,
            )
        )
    model = handler.model
    if model is None:
        return findings
    subject = f"model {model.__module__}.{model.__qualname__} ({name})"
    columns = _model_columns(model)
    for column, field_name in columns.items():
        if column in options.exclude_columns:
            findings.append(
                Finding(
                    Severity.ERROR,
                    subject,
                    f"field {field_name!r} reads column {column!r}, which {file} excludes: "
                    "Debezium never sends it",
                    f"remove {column!r} from `exclude_columns` under `tables.{name}` in {file} "
                    f"and {apply_fix(file)}, or drop the field",
                )
            )
        elif table is not None and column not in table.columns:
            findings.append(_missing(subject, field_name, column, name, table, columns))
        elif table is not None and column in table.generated:
            findings.append(
                Finding(
                    Severity.ERROR,
                    subject,
                    f"field {field_name!r} (handler {handler.name}) reads column {column!r}, "
                    f"which is generated in {name}: PostgreSQL's pgoutput never sends generated "
                    "columns, so no change carries it (only snapshot reads do)",
                    f"compute {column!r} in the handler from the columns it derives from, or "
                    f"read it from {name} in the database; drop the field",
                )
            )
        elif table is not None and column in table.types:
            field = model.model_fields[field_name]
            findings += _field_type(
                subject, field_name, column, table.types[column], field, watched.connector.encoding
            )
    if not_full is not None and table is not None and Op.UPDATE in handler.ops:
        sent = {c: f for c, f in columns.items() if c not in options.exclude_columns}
        findings += _unavailable(handler, subject, model, sent, table, not_full)
    if not_full is not None and table is not None and Op.DELETE in handler.ops:
        # With a non-FULL identity a delete's `before` has every column, but only the key
        # columns have values: a field that rejects null fails on every delete.
        strict = sorted(
            field_name
            for column, field_name in columns.items()
            if column in table.columns
            and column not in table.primary_key
            and not _accepts_none(model.model_fields[field_name].annotation)
        )
        if strict:
            why, fix = not_full
            findings.append(
                Finding(
                    Severity.ERROR,
                    subject,
                    f"handler {handler.name} takes deletes, but {why}: their `before` has only "
                    f"the key ({', '.join(sorted(table.primary_key)) or 'none'}), so "
                    f"{', '.join(strict)} would be null and the row fails validation",
                    f"{fix}; or make those fields optional (`... | None`)",
                )
            )
    return findings


def _not_full(
    name: str, options: TableOptions, table: LiveTable | None, file: str
) -> tuple[str, str] | None:
    """Why the table does not send whole old rows, and the fix; None when it does."""
    if options.replica_identity is not ReplicaIdentity.FULL:
        return (
            f"{file} declares {name} with replica identity {options.replica_identity}",
            f"set `replica_identity: full` under `tables.{name}` in {file}, then {apply_fix(file)}",
        )
    if table is None:
        return None
    if (have := identity_name(table.replica_identity)) != "FULL":
        return (
            f"{name} has replica identity {have} in the database (though {file} declares full)",
            f"{apply_fix(file)} (it runs ALTER TABLE {name} REPLICA IDENTITY FULL)",
        )
    if off := off_identity(table, ReplicaIdentity.FULL):
        return (
            f"its partition(s) {', '.join(off)} are not REPLICA IDENTITY FULL "
            f"(though {file} declares full)",
            f"{apply_fix(file)} (it sets every partition's)",
        )
    return None


def _model_columns(model: type[BaseModel]) -> dict[str, str]:
    """The column each field reads (its alias, else its name) -> the field's name."""
    columns = {}
    for field_name, info in model.model_fields.items():
        alias = info.validation_alias
        columns[alias if isinstance(alias, str) else info.alias or field_name] = field_name
    return columns


def _unavailable(
    handler: TableHandler,
    subject: str,
    model: type[BaseModel],
    columns: Mapping[str, str],
    table: LiveTable,
    not_full: tuple[str, str],
) -> list[Finding]:
    """Fields of TOASTable columns that reject UNAVAILABLE, in a model of updates without
    whole old rows: an update leaving a large value alone fails to validate."""
    strict = sorted(
        field_name
        for column, field_name in columns.items()
        if column in table.types
        and column not in table.generated
        and table.types[column].toastable
        and not table.types[column].arrives.unsent
        and not _accepts(model.model_fields[field_name].annotation, Unavailable)
    )
    if not strict:
        return []
    why, fix = not_full
    return [
        Finding(
            Severity.WARNING,
            subject,
            f"handler {handler.name} takes updates, but {why}: a TOASTed value an update leaves "
            f"alone arrives as UNAVAILABLE, which {', '.join(strict)} reject(s)",
            f"declare them `... | Unavailable`; or {fix}",
        )
    ]


def _accepts_none(annotation: Any) -> bool:
    return _accepts(annotation, None)


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether a field of ``annotation`` takes ``value`` (None, or a type's)."""
    if annotation in (Any, object) or annotation is value:
        return True
    if value is None and annotation is type(None):
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _accepts(typing.get_args(annotation)[0], value)
    if origin in (typing.Union, types.UnionType, typing.Literal):
        return any(_accepts(arg, value) for arg in typing.get_args(annotation))
    return False


def _missing(
    subject: str,
    field_name: str,
    column: str,
    name: str,
    table: LiveTable,
    read: Mapping[str, str],
) -> Finding:
    """A field reading a column the table does not have: renamed, when a column the model
    does not read has a like name."""
    unread = sorted(table.columns - read.keys() - table.generated)
    like = difflib.get_close_matches(column, unread, n=1, cutoff=0.6)
    if not like:
        like = [c for c in unread if column in c or c in column][:1]
    if like:
        return Finding(
            Severity.ERROR,
            subject,
            f"field {field_name!r} reads column {column!r}, which {name} does not have: "
            f"renamed to {like[0]!r}?",
            f"read {like[0]!r} (rename the field, or `Field(alias={like[0]!r})`), or drop it",
        )
    return Finding(
        Severity.ERROR,
        subject,
        f"field {field_name!r} reads column {column!r}, which {name} does not have",
        f"rename or drop the field (columns of {name}: {', '.join(sorted(table.columns))})",
    )


def _field_type(
    subject: str, field_name: str, column: str, ctype: ColumnType, field: Any, encoding: Encoding
) -> list[Finding]:
    """A field whose type cannot take what its column arrives as, or that reads a `time` or
    `timestamp` in the wrong unit (or, in json-noschema, in none)."""
    arrives = ctype.arrives
    if arrives.unsent:
        return [
            Finding(
                Severity.ERROR,
                subject,
                f"field {field_name!r} reads column {column!r} ({ctype.sql}), which no change "
                f"carries: {arrives.unsent}",
                "drop the field, or store the column as another type (jsonb, text[])",
            )
        ]
    fix = f"declare it as `cdc models` does: {arrives.annotation()}"
    if not holds(field.annotation, arrives):
        return [
            Finding(
                Severity.ERROR,
                subject,
                f"field {field_name!r} is declared {_shown(field.annotation)}, but column "
                f"{column!r} ({ctype.sql}) arrives as {arrives.source}",
                fix,
            )
        ]
    if arrives.unit is None:
        return []
    # Only json-noschema reads the unit: with a schema the value arrives converted.
    raw = encoding is Encoding.JSON_NO_SCHEMA
    units = [m for m in _metadata(field) if isinstance(m, TimeUnit)]
    wanted = MILLIS if arrives.unit == "MILLIS" else MICROS
    if units and units[0] is not wanted:
        problem = f"reads {units[0].name}, but Debezium counts {ctype.sql} in {wanted.name}"
        if not raw:
            problem += " (read only in json-noschema)"
    elif not units and raw:
        problem = f"has no unit, which json-noschema needs for {ctype.sql} ({wanted.name})"
    else:
        return []
    severity = Severity.ERROR if raw else Severity.WARNING
    return [Finding(severity, subject, f"field {field_name!r} {problem}", fix)]


def _metadata(field: Any) -> list[Any]:
    """The field's Annotated metadata, also where a union holds the Annotated."""
    found = list(field.metadata)
    stack = [field.annotation]
    while stack:
        annotation = stack.pop()
        if typing.get_origin(annotation) is Annotated:
            found += typing.get_args(annotation)[1:]
            stack.append(typing.get_args(annotation)[0])
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            stack += typing.get_args(annotation)
    return found


def _shown(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return re.sub(r"\b[\w.]+\.(\w+)", r"\1", repr(annotation))
