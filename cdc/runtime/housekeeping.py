"""Housekeeping while the consumer runs: the ledger pruned every ``ledger_prune_interval_s``
(not only at start), so a consumer that runs for weeks keeps it to its retention."""

from __future__ import annotations

import structlog

from cdc.runtime.context import Resources
from cdc.runtime.periodic import Periodic
from cdc.runtime.process_metrics import ProcessMetrics

log = structlog.get_logger("cdc.consumer")


class LedgerPruner:
    """`prune` every interval on a thread of its own, between `start` and `stop`."""

    def __init__(self, resources: Resources, metrics: ProcessMetrics, interval: float) -> None:
        self.resources = resources
        self.metrics = metrics
        self._thread = Periodic("ledger", interval, self.prune, at_start=False)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def prune(self) -> int | None:
        try:
            rows = self.resources.prune_ledger()
        except Exception:  # the database may be down a while: the next turn tries again
            log.warning("ledger.prune_failed", exc_info=True)
            return None
        if rows:
            self.metrics.ledger_pruned.inc(rows)
            log.info("ledger.pruned", rows=rows, table=self.resources.settings.ledger_table)
        return rows
