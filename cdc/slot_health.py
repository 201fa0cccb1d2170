"""The connector's replication slot. A slot that stops advancing holds WAL until the database's
disk fills; a slot that is lost (``max_slot_wal_keep_size``, a failover, a drop by hand) has
lost the changes it held, and Debezium's next slot starts from now. `cdc check`, `cdc lag`,
the capture watcher and the metrics read it here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from cdc.connect import connect_database
from cdc.findings import Finding, Severity, cdc_fix
from cdc.settings import Settings

# pg_replication_slots is readable by every role, and so is pg_current_wal_lsn(): the
# application role the consumer already has reads this, nothing more is granted.
_SLOT = (
    "SELECT active, wal_status, safe_wal_size, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
    "FROM pg_replication_slots WHERE slot_name = %s"
)


@dataclass(frozen=True)
class SlotHealth:
    """``retained_bytes``: WAL the database keeps for the slot (behind ``restart_lsn``);
    ``unconfirmed_bytes``: WAL written since Debezium last confirmed (behind
    ``confirmed_flush_lsn``); ``safe_wal_size``: bytes that may still be written before the
    slot is lost, where ``max_slot_wal_keep_size`` is set. Sizes are None for a lost slot."""

    slot: str
    exists: bool
    active: bool = False
    wal_status: str | None = None  # reserved, extended, unreserved or lost
    retained_bytes: int | None = None
    unconfirmed_bytes: int | None = None
    safe_wal_size: int | None = None

    @property
    def lost(self) -> bool:
        return self.wal_status == "lost"


def read_slot(conn: psycopg.Connection[tuple[Any, ...]], slot: str) -> SlotHealth:
    row = conn.execute(_SLOT, (slot,)).fetchone()
    if row is None:
        return SlotHealth(slot, exists=False)
    active, wal_status, safe, retained, unconfirmed = row
    return SlotHealth(slot, True, bool(active), wal_status, retained, unconfirmed, safe)


def slot_findings(
    slot: SlotHealth, connector: str, tables: list[str], warn_bytes: int, file: str
) -> list[Finding]:
    """Errors for a missing or lost slot (changes are lost: the remedy re-reads the watched
    tables); a warning for one that holds more than ``warn_bytes`` of WAL."""
    subject = f"replication slot {slot.slot}"
    # The connector makes a new slot and re-reads the watched tables (op r).
    recover = f"{cdc_fix('connector recover', file)}: it re-reads {', '.join(tables)}"
    if not slot.exists:
        return [
            Finding(
                Severity.ERROR,
                subject,
                f"does not exist while connector {connector} is configured: changes written "
                "since it went are not captured",
                recover,
            )
        ]
    if slot.lost:
        return [
            Finding(
                Severity.ERROR,
                subject,
                "is lost (wal_status lost: max_slot_wal_keep_size removed WAL it needed): the "
                "changes in that WAL are gone",
                recover,
            )
        ]
    findings = []
    retained = slot.retained_bytes or 0
    if retained > warn_bytes:
        left = (
            f"; {size(slot.safe_wal_size)} more and it is lost"
            if slot.safe_wal_size is not None
            else ""
        )
        findings.append(
            Finding(
                Severity.WARNING,
                subject,
                f"holds {size(retained)} of WAL (over slot_wal_warn_bytes, "
                f"{size(warn_bytes)}){left}",
                "make sure the connector streams (`cdc connector status`) and keeps up; an "
                "idle watched table needs heartbeats, which cdc.yaml turns on",
            )
        )
    # An inactive slot alone is no finding: a task restarting lets it go for a moment, and a
    # task that stays down is the connector's finding. What it costs is the WAL above.
    return findings


def describe(slot: SlotHealth) -> str:
    """One line for a terminal."""
    if not slot.exists:
        return f"replication slot {slot.slot}: does not exist"
    if slot.lost:
        return f"replication slot {slot.slot}: LOST"
    parts = [
        "active" if slot.active else "INACTIVE",
        f"wal_status {slot.wal_status}",
        f"{size(slot.retained_bytes or 0)} of WAL retained",
        f"{size(slot.unconfirmed_bytes or 0)} not yet confirmed by Debezium",
    ]
    if slot.safe_wal_size is not None:
        parts.append(f"{size(slot.safe_wal_size)} until it is lost")
    return f"replication slot {slot.slot}: " + ", ".join(parts)


def slot_line(settings: Settings, slot: str) -> str:
    """`describe` of the slot as the database has it now, or why it could not be read."""
    try:
        with connect_database(settings, timeout=10) as conn:
            return describe(read_slot(conn, slot))
    except psycopg.Error as exc:
        return f"replication slot {slot}: PostgreSQL cannot be read: {str(exc).strip()}"


def size(n: int) -> str:
    amount = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(amount) < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")
