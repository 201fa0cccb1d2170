"""The SQL the watched-tables file implies: publication, replica identity, grants, and the
heartbeat and signal tables. Every name is validated by the config model and quoted here."""

from __future__ import annotations

import json
import uuid

import psycopg
from psycopg import sql

from cdc.tables.config import ReplicaIdentity, TableName, WatchedTables
from cdc.tables.connector import captured_tables
from cdc.tables.live import partition_watched_twice, read_table, watched_ancestor
from cdc.tables.schedule_store import create_tables as create_schedule_tables

_RELREPLIDENT = {ReplicaIdentity.DEFAULT: "d", ReplicaIdentity.FULL: "f"}
# The Outbox Event Router's default columns; `cdc.emit` writes them.
OUTBOX_COLUMNS = ("id", "aggregatetype", "aggregateid", "type", "payload")
OUTBOX_ADDED = "traceparent"  # `cdc connector apply` adds it to an outbox made without it


def _ident(t: TableName) -> sql.Identifier:
    return sql.Identifier(t.schema_, t.table)


def find_problems(
    conn: psycopg.Connection[tuple[object, ...]], watched: WatchedTables, debezium_user: str
) -> list[str]:
    """What in the database contradicts the file: missing tables or columns, tables Debezium
    cannot stream as declared, a missing or unfit Debezium role."""
    problems: list[str] = []
    for t in watched.table_names():
        table = read_table(conn, t)
        if table is None:
            problems.append(f"tables.{t}: no such table in database {conn.info.dbname!r}")
            continue
        options = watched.tables[str(t)]
        if not table.primary_key and options.replica_identity is ReplicaIdentity.DEFAULT:
            # Once published, such a table rejects UPDATE and DELETE.
            problems.append(
                f"tables.{t}: no primary key, so replica_identity must be full "
                "(with default, PostgreSQL would refuse its updates and deletes)"
            )
        ancestor = watched_ancestor(str(t), table, watched.tables)
        if ancestor is not None:
            problems.append(f"tables.{t}: {partition_watched_twice(ancestor)}")
        for option in ("exclude_columns", "key_columns"):
            for col in getattr(options, option):
                if col not in table.columns:
                    problems.append(f"tables.{t}.{option}: no column {col!r} in {t}")
    outbox = watched.outbox_table
    if outbox is not None:
        box = read_table(conn, outbox)
        missing = [c for c in OUTBOX_COLUMNS if box is not None and c not in box.columns]
        if missing:  # an absent outbox is created by `cdc connector apply`
            problems.append(f"outbox.table: {outbox} lacks the column(s) {', '.join(missing)}")
    role = conn.execute(
        "SELECT rolcanlogin, rolreplication FROM pg_roles WHERE rolname = %s", (debezium_user,)
    ).fetchone()
    if role is None:
        problems.append(f"the Debezium role {debezium_user!r} does not exist")
    elif not (role[0] and role[1]):
        problems.append(f"the Debezium role {debezium_user!r} needs LOGIN and REPLICATION")
    return problems


def prepare_tables(
    conn: psycopg.Connection[tuple[object, ...]], watched: WatchedTables, debezium_user: str
) -> None:
    """Internal tables, grants and replica identity; idempotent, in the caller's transaction."""
    role = sql.Identifier(debezium_user)
    internal = sql.Identifier(watched.connector.internal_schema)
    hb, sig = _ident(watched.heartbeat_table), _ident(watched.signal_table)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(internal))
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY, ts timestamptz NOT NULL)"
        ).format(hb)
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id varchar(42) PRIMARY KEY, "
            "type varchar(32) NOT NULL, data varchar(2048))"
        ).format(sig)
    )
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(internal, role))
    conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}").format(hb, role))
    # Incremental snapshots write their watermarks into the signal table.
    conn.execute(sql.SQL("GRANT SELECT, INSERT, DELETE ON {} TO {}").format(sig, role))
    outbox = watched.outbox_table
    if outbox is not None:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(outbox.schema_))
        )
        # Always empty: `cdc.emit` deletes each row in the transaction that inserts it.
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY, "
                "aggregatetype varchar(255) NOT NULL, aggregateid varchar(255) NOT NULL, "
                "type varchar(255) NOT NULL, payload jsonb)"
            ).format(_ident(outbox))
        )
        # W3C trace context of the emitting transaction (NULL without OpenTelemetry); added
        # to an outbox made before it was.
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS traceparent varchar(55)").format(
                _ident(outbox)
            )
        )
        # Delayed events wait beside the outbox (not captured); recurring ones' state.
        create_schedule_tables(conn, watched)
    for t in captured_tables(watched):
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(t.schema_), role)
        )
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(_ident(t), role))
        if str(t) not in watched.tables:
            continue  # the outbox: inserts only, DEFAULT identity is all it needs
        wanted = watched.tables[str(t)].replica_identity
        table = read_table(conn, t)
        if table is None:
            continue  # find_problems reported it
        # A partition's own identity decides what its updates and deletes log; PostgreSQL 15
        # gives neither existing nor new partitions the parent's.
        own = {(t.schema_, t.table): table.replica_identity}
        for (schema, relname), identity in (own | dict(table.partitions)).items():
            if identity != _RELREPLIDENT[wanted]:
                conn.execute(
                    sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(
                        sql.Identifier(schema, relname), sql.SQL(wanted.name)
                    )
                )


def publication_tables(watched: WatchedTables) -> list[TableName]:
    return [*captured_tables(watched), watched.heartbeat_table, watched.signal_table]


def publication_exists(conn: psycopg.Connection[tuple[object, ...]], name: str) -> bool:
    return publishes_via_root(conn, name) is not None


def publishes_via_root(conn: psycopg.Connection[tuple[object, ...]], name: str) -> bool | None:
    """Whether the publication has ``publish_via_partition_root``; None: no such publication."""
    row = conn.execute(
        "SELECT pubviaroot FROM pg_publication WHERE pubname = %s", (name,)
    ).fetchone()
    return None if row is None else bool(row[0])


def published_tables(conn: psycopg.Connection[tuple[object, ...]], name: str) -> set[str]:
    rows = conn.execute(
        "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s",
        (name,),
    )
    return {str(r[0]) for r in rows}


def publication_or_none(conn: psycopg.Connection[tuple[object, ...]], name: str) -> set[str] | None:
    """The publication's tables, or None when there is no such publication."""
    return published_tables(conn, name) if publication_exists(conn, name) else None


def request_incremental_snapshot(
    conn: psycopg.Connection[tuple[object, ...]], watched: WatchedTables, tables: list[str]
) -> str:
    """Ask Debezium, through its signal table, for an incremental snapshot of ``tables``."""
    signal_id = str(uuid.uuid4())
    data = json.dumps({"data-collections": tables, "type": "incremental"})
    conn.execute(
        sql.SQL("INSERT INTO {} (id, type, data) VALUES (%s, 'execute-snapshot', %s)").format(
            _ident(watched.signal_table)
        ),
        (signal_id, data),
    )
    return signal_id


def sync_publication(conn: psycopg.Connection[tuple[object, ...]], watched: WatchedTables) -> None:
    """Create the publication or set its table list to exactly the watched tables.

    Changes of a partition are published as changes of its partitioned root, so a watched
    parent's changes reach Debezium under the parent's name, whichever partition holds the
    row (and partitions made later included). The option does nothing for other tables."""
    name = sql.Identifier(watched.connector.publication)
    tables = sql.SQL(", ").join(_ident(t) for t in publication_tables(watched))
    via_root = publishes_via_root(conn, watched.connector.publication)
    if via_root is False:
        # The option first: a watched parent is never published through its partitions.
        conn.execute(
            sql.SQL("ALTER PUBLICATION {} SET (publish_via_partition_root = true)").format(name)
        )
    if via_root is not None:
        conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(name, tables))
    else:
        conn.execute(
            sql.SQL(
                "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)"
            ).format(name, tables)
        )
