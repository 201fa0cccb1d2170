"""The processed-changes ledger: one row per (handler, change), written in the handler's own
transaction, so a change delivered again is recognised and skipped.

Kafka delivers at least once; a handler's database writes and its ledger row commit or roll
back together, which makes those writes effectively once."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from cdc.errors import ConfigError
from cdc.tables.config import IDENTIFIER


class AlreadyProcessed(Exception):
    """This handler already committed this change (a redelivery)."""


class Ledger:
    def __init__(self, table: str) -> None:
        parts = table.split(".")
        if not 1 <= len(parts) <= 2 or not all(IDENTIFIER.match(p) for p in parts):
            raise ConfigError(
                "ledger_table", [f"{table!r} must be table or schema.table, lowercase, unquoted"]
            )
        self.table = table
        ident = sql.Identifier(*parts)
        self._create = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " handler text NOT NULL,"
            " change_key text NOT NULL,"
            " processed_at timestamptz NOT NULL DEFAULT now(),"
            " PRIMARY KEY (handler, change_key))"
        ).format(ident)
        self._claim = sql.SQL(
            "INSERT INTO {} (handler, change_key) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        ).format(ident)
        self._prune = sql.SQL("DELETE FROM {} WHERE processed_at < now() - %s::interval").format(
            ident
        )

    def create(self, conn: Any) -> None:
        conn.execute(self._create)

    def claim(self, conn: Any, handler: str, change_key: str) -> None:
        """Record the change in ``conn``'s transaction; AlreadyProcessed if it was.

        A concurrent claim of the same change (two consumers during a rebalance) waits for
        the other transaction and then sees its row."""
        if conn.execute(self._claim, (handler, change_key)).rowcount == 0:
            raise AlreadyProcessed(f"{handler} already processed {change_key}")

    async def aclaim(self, conn: Any, handler: str, change_key: str) -> None:
        cur = await conn.execute(self._claim, (handler, change_key))
        if cur.rowcount == 0:
            raise AlreadyProcessed(f"{handler} already processed {change_key}")

    def prune(self, conn: Any, older_than_days: float) -> int:
        """Forget changes processed longer ago than any redelivery can come (topic retention)."""
        return int(conn.execute(self._prune, (f"{older_than_days} days",)).rowcount)
