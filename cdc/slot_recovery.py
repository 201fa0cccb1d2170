"""``cdc connector recover``: after a replication slot is lost or dropped, capture again and
re-read what was missed. The changes a lost slot held are gone for good; what can be had is
every watched row as it is now, as snapshot reads (op r) through an incremental snapshot,
while streaming goes on from the new slot."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from psycopg import sql

from cdc.connect import ConnectClient, connect_database, request_snapshot
from cdc.errors import RecoveryError
from cdc.settings import Settings
from cdc.slot_health import SlotHealth, read_slot
from cdc.tables.config import WatchedTables

log = structlog.get_logger("cdc.connect")


@dataclass(frozen=True)
class Recovery:
    """What was done: the slot as found, whether it was dropped, the snapshot that re-reads
    the tables (an incremental snapshot's signal id, or the connector's own initial one) and
    the rows it re-reads (per watched table, counted before the connector started again)."""

    found: SlotHealth
    dropped: bool
    signal: str | None
    rows: dict[str, int]

    @property
    def needed(self) -> bool:
        return self.signal is not None


def recover_slot(watched: WatchedTables, settings: Settings, timeout: float = 90.0) -> Recovery:
    """Nothing when the slot is healthy. Otherwise stop the connector, drop a lost slot,
    forget the connector's offsets and start it again: it makes a new slot and, in a
    snapshot mode that snapshots at start, re-reads every watched table itself; otherwise an
    incremental snapshot of them is requested."""
    opts = watched.connector
    client = ConnectClient(settings.connect_url)
    with connect_database(settings) as conn:
        found = read_slot(conn, opts.slot)
    if found.exists and not found.lost:
        return Recovery(found, dropped=False, signal=None, rows={})
    client.stop(opts.name)
    dropped = False
    if found.exists:  # lost: it cannot stream again, and a new one needs its name
        _drop_when_released(settings, opts.slot, timeout)
        dropped = True
    # Debezium refuses to stream from an offset older than its new slot: it starts anew.
    _wait_stopped(client, opts.name, timeout)
    client.reset_offsets(opts.name)
    tables = sorted(watched.tables)
    with connect_database(settings) as conn:
        rows = {t: _count(conn, t) for t in tables}
    client.resume(opts.name)
    client.wait_running(opts.name, timeout, grace=5.0)
    _wait_slot(settings, opts.slot, timeout)
    if opts.snapshot_mode in _SNAPSHOTS_AT_START:
        signal = f"initial snapshot ({opts.snapshot_mode})"  # the new start reads them all
    else:
        signal = f"incremental snapshot {request_snapshot(watched, settings, tables)}"
    log.warning(
        "connector.recovered",
        connector=opts.name,
        slot=opts.slot,
        was="lost" if found.exists else "missing",
        snapshot=signal,
        rows=sum(rows.values()),
    )
    return Recovery(found, dropped, signal, rows)


# snapshot.mode values that snapshot the tables when the connector starts without offsets.
_SNAPSHOTS_AT_START = {"initial", "always", "when_needed", "initial_only"}


def _wait_stopped(client: ConnectClient, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while client.status(name).get("connector", {}).get("state") != "STOPPED":
        if time.monotonic() > deadline:
            raise RecoveryError(f"connector {name} did not stop within {timeout:.0f}s")
        time.sleep(0.5)


def _count(conn: psycopg.Connection[tuple[Any, ...]], table: str) -> int:
    schema, name = table.split(".", 1)
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name)))
    return int(row.fetchone()[0])  # type: ignore[index]


def _drop_when_released(settings: Settings, slot: str, timeout: float) -> None:
    """Drop the slot once the stopped task has let it go, as the Debezium role (REPLICATION
    may drop slots; the application role need not have it)."""
    deadline = time.monotonic() + timeout
    try:
        with psycopg.connect(
            settings.pg_conninfo(),
            user=settings.debezium_user,
            password=settings.debezium_password.get_secret_value(),
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            while read_slot(conn, slot).active:
                if time.monotonic() > deadline:
                    raise RecoveryError(f"slot {slot} still in use after {timeout:.0f}s")
                time.sleep(0.5)
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    except psycopg.Error as exc:
        raise RecoveryError(
            f"cannot drop the lost slot {slot} as {settings.debezium_user} "
            f"({str(exc).strip()}): run SELECT pg_drop_replication_slot('{slot}') as a role "
            "with REPLICATION, then `cdc connector recover` again"
        ) from None


def _wait_slot(settings: Settings, slot: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with connect_database(settings) as conn:
        while not read_slot(conn, slot).active:
            if time.monotonic() > deadline:
                raise RecoveryError(
                    f"the connector made no slot {slot} within {timeout:.0f}s: see "
                    "`cdc connector status`"
                )
            time.sleep(0.5)
