"""The series a process watches once, however many workloads it runs: whether Debezium
captures, the replication slot, and the ledger's pruning. A registry of their own, without a
workload label (each workload's runtime has its own `Metrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ProcessMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.capture_problems = Gauge(
            "cdc_capture_problems",
            "What stops Debezium capturing the watched tables, by connector and check "
            "(connector, task, publication, table, slot; unknown: Connect or PostgreSQL not "
            "asked).",
            ["connector", "check"],
            registry=r,
        )
        self.ledger_pruned = Counter(
            "cdc_ledger_pruned_rows",
            "Ledger rows pruned while running, past ledger_retention_days.",
            registry=r,
        )
        slot = ["connector", "slot"]
        self.slot_active = Gauge(
            "cdc_slot_active", "1 while a connector reads the replication slot.", slot, registry=r
        )
        self.slot_lost = Gauge(
            "cdc_slot_lost",
            "1 when the replication slot is missing or lost (wal_status lost): changes were lost.",
            slot,
            registry=r,
        )
        self.slot_retained_wal = Gauge(
            "cdc_slot_retained_wal_bytes",
            "WAL the database keeps for the replication slot (behind its restart_lsn).",
            slot,
            registry=r,
        )
        self.slot_unconfirmed_wal = Gauge(
            "cdc_slot_unconfirmed_wal_bytes",
            "WAL written since Debezium last confirmed (behind confirmed_flush_lsn).",
            slot,
            registry=r,
        )
        self.slot_safe_wal = Gauge(
            "cdc_slot_safe_wal_bytes",
            "WAL that may still be written before the slot is lost (max_slot_wal_keep_size "
            "set; -1 where it is not).",
            slot,
            registry=r,
        )
