"""Build changes the way Debezium would send them, for handler unit tests.

The factory follows the watched-tables file: an excluded column is absent, and a table with
DEFAULT replica identity gets no old row on updates and only the key's values on deletes, so a
handler that needs more fails in its unit test rather than in production.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cdc.events import Change, KafkaCoordinates, Op, Source
from cdc.events.columns import plain
from cdc.tables.config import ReplicaIdentity, TableOptions, WatchedTables

DEBEZIUM_VERSION = "3.6.3.Final"


class ChangeFactory:
    """``insert``, ``update``, ``delete``, ``read`` (snapshot) and ``truncate`` changes.

    ``keys`` names each table's primary key columns (default ``id``)."""

    def __init__(
        self,
        watched: WatchedTables | None = None,
        *,
        keys: Mapping[str, Sequence[str]] | None = None,
        database: str = "app",
    ) -> None:
        self.watched = watched
        self.keys = {_qualified(t): tuple(cols) for t, cols in (keys or {}).items()}
        self.database = database
        self._lsn = itertools.count(24_000_000, 1_024)
        self._tx = itertools.count(800)
        self._offsets: dict[str, itertools.count[int]] = {}

    def insert(self, table: str, row: Mapping[str, Any]) -> Change:
        return self._change(table, Op.CREATE, None, row)

    def update(
        self,
        table: str,
        before: Mapping[str, Any],
        after: Mapping[str, Any] | None = None,
        **set_: Any,
    ) -> Change:
        """``update(t, row, title="New")`` or ``update(t, old_row, new_row)``."""
        return self._change(table, Op.UPDATE, before, {**before, **(after or {}), **set_})

    def delete(self, table: str, row: Mapping[str, Any]) -> Change:
        return self._change(table, Op.DELETE, row, None)

    def read(self, table: str, row: Mapping[str, Any]) -> Change:
        """A snapshot read of an existing row."""
        return self._change(table, Op.READ, None, row)

    def truncate(self, table: str) -> Change:
        return self._change(table, Op.TRUNCATE, None, None)

    def options(self, table: str) -> TableOptions:
        if self.watched is None:
            return TableOptions()
        return self.watched.tables.get(table, TableOptions())

    def _change(
        self,
        table: str,
        op: Op,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> Change:
        table = _qualified(table)
        schema, name = table.split(".")
        options = self.options(table)
        primary_key = self.keys.get(table, ("id",))
        full = options.replica_identity is ReplicaIdentity.FULL
        old = _visible(before, options)
        new = _visible(after, options)
        if old is not None and not full:
            # DEFAULT identity: PostgreSQL logs only the key of a deleted row (Debezium sends
            # the other columns as null) and nothing of an updated one.
            old = {k: v if k in primary_key else None for k, v in old.items()}
            if op is not Op.DELETE:
                old = None
        row = new if new is not None else old
        # The record key: the primary key, or the table's `key_columns` (a delete under
        # DEFAULT identity has them only where they are in the primary key, as in Debezium).
        key_columns = options.key_columns or primary_key
        key = None if row is None else {k: row.get(k) for k in key_columns}
        now_ms = int(time.time() * 1000)
        snapshot = op is Op.READ
        prefix = self.watched.connector.topic_prefix if self.watched else "cdc"
        topic = f"{prefix}.{table}"
        offsets = self._offsets.setdefault(topic, itertools.count())
        return Change(
            op,
            plain(old),
            plain(new),
            Source(
                {
                    "version": DEBEZIUM_VERSION,
                    "connector": "postgresql",
                    "name": prefix,
                    "db": self.database,
                    "schema": schema,
                    "table": name,
                    "ts_ms": now_ms,
                    "ts_us": now_ms * 1000,
                    "snapshot": "true" if snapshot else "false",
                    "txId": None if snapshot else next(self._tx),
                    "lsn": next(self._lsn),
                }
            ),
            KafkaCoordinates(topic, 0, next(offsets)),
            key=key,
            ts_ms=now_ms,
        )


def _qualified(table: str) -> str:
    return table if "." in table else f"public.{table}"


def _visible(row: Mapping[str, Any] | None, options: TableOptions) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: v for k, v in row.items() if k not in options.exclude_columns}
