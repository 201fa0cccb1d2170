"""The scheduler's tables and statements.

Delayed events wait in ``<outbox>_scheduled`` beside the outbox (``public.outbox`` →
``public.outbox_scheduled``): `cdc.emit` finds it from the outbox table it is given, with no
other setting, and the application role that writes the outbox writes it too. Recurring
schedules keep the due time they last fired in ``<internal schema>.schedules``, a row per
outbox table and schedule. Neither table is captured: the scheduler moves what is due into
the outbox, which is."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from cdc.errors import ConfigError
from cdc.tables.config import TableName, WatchedTables

Connection = psycopg.Connection[Any]
SUFFIX = "_scheduled"
# Names the recurring events' ids: one id per schedule and due time, whoever fires it.
EVENT_NAMESPACE = uuid.UUID("5b6f3c1e-2d7a-4f7e-9a53-0c1d2e3f4a5b")


def delayed_table(outbox: str) -> str:
    """Where `emit(..., table=outbox, deliver_at=...)` writes: ``schema.<table>_scheduled``."""
    if len(outbox.rsplit(".", 1)[-1]) + len(SUFFIX) > 63:  # PostgreSQL would cut the name
        raise ConfigError("outbox.table", [f"{outbox}: at most 53 characters for delays"])
    return f"{outbox}{SUFFIX}"


def schedules_table(watched: WatchedTables) -> TableName:
    return TableName(schema=watched.connector.internal_schema, table="schedules")


def _ident(name: str | TableName) -> sql.Identifier:
    return sql.Identifier(*str(name).split("."))


def create_tables(conn: Connection, watched: WatchedTables) -> None:
    """Both tables, if missing; idempotent (run by `cdc connector apply` and the scheduler)."""
    if watched.outbox is None:
        return
    delayed = _ident(delayed_table(watched.outbox.table))
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY, "
            "deliver_at timestamptz NOT NULL, aggregatetype varchar(255) NOT NULL, "
            "aggregateid varchar(255) NOT NULL, type varchar(255) NOT NULL, payload jsonb, "
            "traceparent varchar(55), created_at timestamptz NOT NULL DEFAULT now())"
        ).format(delayed)
    )
    index = sql.Identifier(f"{watched.outbox.table.split('.')[1]}{SUFFIX}_due")
    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (deliver_at)").format(index, delayed))
    conn.execute(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
            sql.Identifier(watched.connector.internal_schema)
        )
    )
    conn.execute(
        sql.SQL(
            # Per outbox: two applications sharing a database keep their schedules apart.
            "CREATE TABLE IF NOT EXISTS {} (outbox text, name text, spec text NOT NULL, "
            "last_due timestamptz NOT NULL, fired_at timestamptz, "
            "fires bigint NOT NULL DEFAULT 0, PRIMARY KEY (outbox, name))"
        ).format(_ident(schedules_table(watched)))
    )


def delayed_insert(outbox: str) -> sql.Composed:
    """The insert `emit` runs for a delayed event: id, deliver_at (or NULL), deliver_after
    (an interval, from the database's clock, or NULL), then the outbox row's values."""
    return sql.SQL(
        "INSERT INTO {} (id, deliver_at, aggregatetype, aggregateid, type, payload, traceparent) "
        "VALUES (%s, coalesce(%s::timestamptz, clock_timestamp() + %s::interval), "
        "%s, %s, %s, %s::jsonb, %s)"
    ).format(_ident(delayed_table(outbox)))


@dataclass(frozen=True)
class Moved:
    ids: list[uuid.UUID]
    late_s: float  # the longest any of them waited past its time


class Statements:
    """The scheduler's SQL for one watched-tables file (which has an outbox)."""

    def __init__(self, watched: WatchedTables) -> None:
        assert watched.outbox is not None
        outbox = _ident(watched.outbox.table)
        delayed = _ident(delayed_table(watched.outbox.table))
        self.schedules = _ident(schedules_table(watched))
        mine = sql.Literal(watched.outbox.table)
        columns = sql.SQL("id, aggregatetype, aggregateid, type, payload, traceparent")
        # One statement: the due rows leave the schedule table and enter the outbox together.
        self.move = sql.SQL(
            "WITH due AS (DELETE FROM {delayed} WHERE id IN (SELECT id FROM {delayed} "
            "WHERE deliver_at <= clock_timestamp() ORDER BY deliver_at LIMIT %s "
            "FOR UPDATE SKIP LOCKED) RETURNING *), "
            "moved AS (INSERT INTO {outbox} ({columns}) SELECT {columns} FROM due) "
            "SELECT coalesce(array_agg(id), '{{}}'), "
            "coalesce(max(extract(epoch FROM clock_timestamp() - deliver_at)), 0) FROM due"
        ).format(delayed=delayed, outbox=outbox, columns=columns)
        # The outbox stays empty, as with `emit`: Debezium reads the insert from the log.
        self.clear = sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(outbox)
        self.next_due = sql.SQL(
            "SELECT extract(epoch FROM min(deliver_at) - clock_timestamp()) FROM {}"
        ).format(delayed)
        self.pending = sql.SQL(
            "SELECT id, deliver_at, aggregatetype, aggregateid, type FROM {} "
            "ORDER BY deliver_at LIMIT %s"
        ).format(delayed)
        self.count = sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE deliver_at <= clock_timestamp()) FROM {}"
        ).format(delayed)
        self.register = sql.SQL(
            "INSERT INTO {t} (outbox, name, spec, last_due) VALUES ({o}, %s, %s, %s) "
            "ON CONFLICT (outbox, name) DO UPDATE SET spec = EXCLUDED.spec, "
            # A changed schedule starts afresh: the old one's missed slots are not its own.
            "last_due = CASE WHEN {t}.spec = EXCLUDED.spec THEN {t}.last_due "
            "ELSE EXCLUDED.last_due END"
        ).format(t=self.schedules, o=mine)
        self.lock_schedule = sql.SQL(
            "SELECT spec, last_due FROM {} WHERE outbox = {} AND name = %s FOR UPDATE"
        ).format(self.schedules, mine)
        self.advance = sql.SQL(
            "UPDATE {} SET last_due = %s, fired_at = clock_timestamp(), fires = fires + 1 "
            "WHERE outbox = {} AND name = %s"
        ).format(self.schedules, mine)
        self.states = sql.SQL(
            "SELECT name, spec, last_due, fired_at, fires FROM {} WHERE outbox = {}"
        ).format(self.schedules, mine)

    def move_due(self, conn: Connection, batch: int) -> Moved:
        """Move up to ``batch`` due delayed events into the outbox, in one transaction."""
        with conn.transaction():
            row = conn.execute(self.move, (batch,)).fetchone()
            assert row is not None
            ids, late = list(row[0]), float(row[1])
            if ids:
                conn.execute(self.clear, (ids,))
        return Moved(ids, late)

    def seconds_to_next(self, conn: Connection) -> float | None:
        row = conn.execute(self.next_due).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def now(self, conn: Connection) -> datetime:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        moment: datetime = row[0]
        return moment
