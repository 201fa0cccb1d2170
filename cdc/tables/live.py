"""What PostgreSQL says about a watched table: replica identity, key, columns, generated
columns, and where it sits in a partition tree."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cdc.tables.column_types import ColumnType, read_column_types
from cdc.tables.config import TableName


@dataclass(frozen=True)
class LiveTable:
    replica_identity: str  # pg_class.relreplident: d, f, n or i
    primary_key: frozenset[str]
    columns: frozenset[str]
    # STORED generated columns: PostgreSQL 15's pgoutput leaves them out of every change.
    generated: frozenset[str] = frozenset()
    # Array columns declared with more than one dimension (int[][]): Debezium cannot carry
    # their values (it sends a row of NULLs, or of Java object names for text).
    multidimensional: frozenset[str] = frozenset()
    partitioned: bool = False
    # A partitioned table's leaf partitions, (schema, table) -> their relreplident. Their
    # own identity decides what old row the WAL keeps for their updates and deletes.
    partitions: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # A partition's ancestors (schema.table), its parent first and the root last.
    ancestors: tuple[str, ...] = ()
    # REPLICA IDENTITY USING INDEX: the index's columns.
    identity_index: frozenset[str] = frozenset()

    @property
    def old_row_columns(self) -> frozenset[str] | None:
        """The columns PostgreSQL logs of a deleted row (None: every column)."""
        if self.replica_identity == "f":
            return None
        if self.replica_identity == "i":
            return self.identity_index
        return self.primary_key if self.replica_identity == "d" else frozenset()

    # What each column arrives as, in order; empty unless asked for (`read_table(types=True)`).
    types: Mapping[str, ColumnType] = field(default_factory=dict)


_TABLE = (
    "SELECT c.oid, c.relkind = 'p', c.relreplident, "
    "ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid "
    "AND a.attnum > 0 AND NOT a.attisdropped), "
    "ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid "
    "AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''), "
    "ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid "
    "AND a.attnum > 0 AND NOT a.attisdropped AND a.attndims > 1), "
    "ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a "
    "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
    "WHERE i.indrelid = c.oid AND i.indisprimary), "
    "ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a "
    "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
    "WHERE i.indrelid = c.oid AND i.indisreplident) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')"
)
_LEAVES = (
    "SELECT n.nspname, c.relname, c.relreplident FROM pg_partition_tree(%s) t "
    "JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE t.isleaf AND t.level > 0 ORDER BY 1, 2"
)
# pg_partition_ancestors lists the relation itself first, then its parent, up to the root.
_ANCESTORS = (
    "SELECT n.nspname || '.' || c.relname FROM pg_partition_ancestors(%s) WITH ORDINALITY "
    "AS a(relid, depth) JOIN pg_class c ON c.oid = a.relid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE a.depth > 1 ORDER BY a.depth"
)


def read_table(
    conn: psycopg.Connection[tuple[Any, ...]], table: TableName, *, types: bool = False
) -> LiveTable | None:
    """None when there is no such table (or it is a view, a foreign table...). ``types``: also
    read what each column arrives as."""
    row = conn.execute(_TABLE, (table.schema_, table.table)).fetchone()
    if row is None:
        return None
    oid, partitioned, identity, columns, generated, multidimensional, key, index = row
    return LiveTable(
        str(identity),
        frozenset(key),
        frozenset(columns),
        frozenset(generated),
        frozenset(multidimensional),
        partitioned=bool(partitioned),
        partitions={(str(r[0]), str(r[1])): str(r[2]) for r in conn.execute(_LEAVES, (oid,))}
        if partitioned
        else {},
        ancestors=tuple(str(r[0]) for r in conn.execute(_ANCESTORS, (oid,))),
        identity_index=frozenset(index),
        types=read_column_types(conn, oid) if types else {},
    )


def read_tables(
    conn: psycopg.Connection[tuple[Any, ...]], tables: Iterable[TableName], *, types: bool = False
) -> dict[str, LiveTable]:
    """The tables that exist, by schema.table."""
    found = {}
    for t in tables:
        live = read_table(conn, t, types=types)
        if live is not None:
            found[str(t)] = live
    return found


def watched_ancestor(name: str, table: LiveTable, watched: Iterable[str]) -> str | None:
    """The nearest of ``table``'s ancestors that is watched too, if any."""
    listed = set(watched) - {name}
    return next((a for a in table.ancestors if a in listed), None)


def partition_watched_twice(ancestor: str) -> str:
    return (
        f"a partition of {ancestor}, which is watched too: its changes arrive as {ancestor}'s "
        f"(on its topic, to its handlers), and a snapshot would read its rows twice"
    )
