"""Which records reach handlers. Decided per table, after decoding and before routing; what
is held back is counted, never dropped silently."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from cdc.events.change import Event, Kind


class Delivery(BaseModel):
    """A table's policy. Streaming changes (c, u, d) always reach its handlers."""

    model_config = ConfigDict(frozen=True)

    snapshot_reads: bool = False  # op r: initial and incremental snapshots
    truncates: bool = True
    tombstones: bool = False  # the null record after a delete, only useful for compaction


class DeliveryGate:
    """Admits or holds back each event and counts what it holds back, by kind and table.

    Records that belong to no table (heartbeats, transaction boundaries, logical decoding
    messages) are held back unless asked for.
    """

    def __init__(
        self,
        tables: Mapping[str, Delivery] | None = None,
        *,
        default: Delivery | None = None,
        heartbeats: bool = False,
        transactions: bool = False,
        messages: bool = False,
    ) -> None:
        self.tables = dict(tables or {})
        self.default = default or Delivery()
        self._tableless = {
            Kind.HEARTBEAT: heartbeats,
            Kind.TRANSACTION: transactions,
            Kind.MESSAGE: messages,
        }
        self.held_back: Counter[tuple[Kind, str]] = Counter()
        self._decided: dict[tuple[Kind, str], bool] = {}  # admits(), once per kind and table

    def admit(self, event: Event) -> bool:
        kind = event.kind
        if kind is Kind.CHANGE or kind is Kind.EVENT:
            return True
        return self.admits(kind, event.table)

    def admits(self, kind: Kind, table: str) -> bool:
        """`admit` for a record whose kind and table are known (before decoding it, too)."""
        admitted = self._decided.get((kind, table))
        if admitted is None:
            admitted = self._tableless.get(kind)
            if admitted is None:
                policy = self.tables.get(table, self.default)
                admitted = bool(getattr(policy, _POLICY_FIELD[kind]))
            self._decided[kind, table] = admitted
        if not admitted:
            self.held_back[kind, table] += 1
        return admitted


_POLICY_FIELD = {
    Kind.SNAPSHOT_READ: "snapshot_reads",
    Kind.TRUNCATE: "truncates",
    Kind.TOMBSTONE: "tombstones",
}
