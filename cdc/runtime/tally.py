"""Counts and timings taken while a batch goes through, added to the metrics once per batch."""

from __future__ import annotations

import threading
from collections import Counter

from cdc.runtime.metrics import Metrics, PlainHistogram

# (table, op, outcome): the labels of cdc_records_total
Labels = tuple[str, str, str]
# A histogram's observations: (its labels, the amount)
Observed = list[tuple[tuple[str, ...], float]]


class Tally:
    """What the consumer thread counts is kept until `flush` (the metrics take a lock on
    every update); other threads (the workers) update the metrics at once, as nothing would
    flush for them."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.counts: Counter[Labels] = Counter()
        self._observed: dict[PlainHistogram, Observed] = {}
        self._owner: int | None = None

    def bind(self) -> None:
        """The calling thread is the consumer thread from now on."""
        self._owner = threading.get_ident()

    def count(self, outcome: str, table: str, op: str) -> None:
        if threading.get_ident() == self._owner:
            self.counts[table, op, outcome] += 1
        else:
            self.metrics.child(self.metrics.records, table, op, outcome).inc()

    def observe(self, metric: PlainHistogram, labels: tuple[str, ...], amount: float) -> None:
        if threading.get_ident() == self._owner:
            self.here(metric).append((labels, amount))
        else:
            metric.observe(labels, amount)

    def here(self, metric: PlainHistogram) -> Observed:
        """What the consumer thread observed of ``metric`` since the last flush, to add to
        (from the consumer thread only: `observe` without its checks, for the hot path)."""
        observed = self._observed.get(metric)
        if observed is None:
            observed = self._observed[metric] = []
        return observed

    def flush(self) -> None:
        m = self.metrics
        for (table, op, outcome), n in self.counts.items():
            m.child(m.records, table, op, outcome).inc(n)
        self.counts.clear()
        for metric, observed in self._observed.items():
            metric.observe_all(observed)
            observed.clear()
