"""Changes handed to a handler together: a batch, or one whole transaction."""

from __future__ import annotations

from collections.abc import Iterable

from cdc.events.change import Change
from cdc.events.source import KafkaCoordinates


class Changes(list[Change]):
    """A list of changes for one call of a handler that takes a list, in the order it gets
    them. ``transaction``: the id of the PostgreSQL transaction they make up, if they do."""

    def __init__(self, changes: Iterable[Change] = (), transaction: str | None = None) -> None:
        super().__init__(changes)
        self.transaction = transaction

    @property
    def idempotency_key(self) -> str:
        """A transaction's: the same on every delivery of it. A batch's names its first and
        last change (a redelivered batch may be cut otherwise: the ledger is not for it)."""
        if not self:
            return "batch/-"
        first = self[0]
        if self.transaction is not None:
            return f"transaction/{first.source.db}/{self.transaction}"
        return f"batch/{first.idempotency_key}/{len(self)}"

    @property
    def kafka(self) -> KafkaCoordinates | None:
        """Where the first change came from (for the log lines of the call)."""
        return self[0].kafka if self else None

    @property
    def tables(self) -> list[str]:
        return sorted({c.table for c in self})

    def part(self, changes: Iterable[Change]) -> Changes:
        """Some of these changes, as the same kind of list."""
        return Changes(changes, self.transaction)
