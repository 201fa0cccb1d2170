"""What a handler declares: what it reacts to, how it wants rows typed, and in which lane it
runs. The decorators in `cdc.routing.handlers` make these."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cdc.events import Change, DomainEvent, Op
from cdc.events.change import trusted
from cdc.events.columns import Columns
from cdc.tables.workloads import DEFAULT_WORKLOAD


@dataclass(frozen=True, eq=False)
class TableHandler:
    """One handler's declaration: what it reacts to and how it wants rows typed."""

    func: Callable[..., Any]
    table: str  # schema.table
    ops: frozenset[Op]
    columns: frozenset[str] | None
    snapshot_reads: bool | None  # None: the table's `snapshot_reads` in the watched-tables file
    model: type[BaseModel] | None
    reads_before: bool
    name: str
    ledger: bool = False
    batch: int | None = None  # a batch handler: up to this many changes in one call
    max_wait_s: float = 1.0  # how long a batch waits to fill up (debounced: a key's first change)
    debounce_s: float | None = None  # once per key, with its latest change, when quiet this long
    workload: str = DEFAULT_WORKLOAD
    attempts: int | None = None  # over the workload's retry.attempts
    timeout_s: float | None = None  # over the workload's timeout_s
    keep_order: bool | None = None  # None: the workload's keep_order

    def wants(self, change: Change, snapshot_reads: bool) -> bool:
        """Whether this change is for this handler (table already matched)."""
        op = change.op
        if op is Op.READ:
            return snapshot_reads
        if op not in self.ops:
            return False
        if self.columns is not None and op is Op.UPDATE:
            changed = change.changed_columns()
            # Without the old row nothing says what changed: run rather than miss a change.
            return changed is None or not changed.isdisjoint(self.columns)
        return True

    def typed(self, change: Change) -> Change[Any]:
        """The change with `before` / `after` as the handler's row model.

        Raises pydantic's ValidationError when a row does not fit the model, `DecodeError`
        when a column it reads contradicts the record's schema."""
        model = self.model
        if model is None or (change.before is None and change.after is None):
            return change
        before, after = change.before, change.after
        return change.with_rows(
            None if before is None else model.model_validate(_columns_for(model, before)),
            None if after is None else model.model_validate(_columns_for(model, after)),
        )


def _columns_for(model: type[BaseModel], row: Mapping[str, Any]) -> Any:
    """The columns the model reads, converted: only those, unless it keeps extra ones."""
    names = _READS.get(model)
    if names is None:
        if model.model_config.get("extra") in ("allow", "forbid"):
            names = _READS[model] = ()
        else:
            wire = {n for name, f in model.model_fields.items() for n in (name, f.alias) if n}
            names = _READS[model] = tuple(wire)
    if not names or not isinstance(row, Columns):
        return row if isinstance(row, dict) else dict(row)
    return {name: row[name] for name in names if name in row}


_READS: dict[type[BaseModel], tuple[str, ...]] = {}


@dataclass(frozen=True, eq=False)
class EventHandler:
    """One domain-event handler's declaration: the event type it takes and its payload model."""

    func: Callable[..., Any]
    event_type: str
    model: type[BaseModel] | None
    name: str
    ledger: bool = False
    workload: str = DEFAULT_WORKLOAD
    attempts: int | None = None  # over the workload's retry.attempts
    timeout_s: float | None = None  # over the workload's timeout_s
    keep_order: bool | None = None  # None: the workload's keep_order

    def typed(self, event: DomainEvent) -> DomainEvent[Any]:
        """The event with its payload as the handler's model.

        Raises pydantic's ValidationError when the payload does not fit."""
        if self.model is None:
            return event
        values = dict(event.__dict__, payload=self.model.model_validate(event.payload))
        return trusted(DomainEvent[self.model], values)  # type: ignore[name-defined]


@dataclass(frozen=True, eq=False)
class TransactionHandler:
    """A handler of whole transactions: every change (insert, update, delete, truncate) a
    committed PostgreSQL transaction made to its tables, in one list, in commit order."""

    func: Callable[..., Any]
    tables: frozenset[str]  # schema.table
    reads_before: bool
    name: str
    ledger: bool = False
    workload: str = DEFAULT_WORKLOAD
    attempts: int | None = None  # over the workload's retry.attempts
    timeout_s: float | None = None  # over the workload's timeout_s
    model: None = None  # the tables differ: a handler validates rows itself if it wants

    def wants(self, change: Change) -> bool:
        return change.op is not Op.READ


Handler = TableHandler | EventHandler | TransactionHandler
