"""Housekeeping while the consumer runs: the ledger pruned every ``ledger_prune_interval_s``
(not only at start), so a consumer that runs for weeks keeps it to its retention."""

from __future__ import annotations

import threading

import structlog

from cdc.runtime.context import Resources
from cdc.runtime.metrics import Metrics

log = structlog.get_logger("cdc.consumer")


class LedgerPruner:
    """A thread of its own, between `start` and `stop`."""

    def __init__(self, resources: Resources, metrics: Metrics, interval: float) -> None:
        self.resources = resources
        self.metrics = metrics
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="cdc-ledger", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.prune()

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
