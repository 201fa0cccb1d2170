"""The records a Debezium PostgreSQL connector writes, as typed models.

Decoders build these with `trusted` from values they have already checked against the
record's schema, so reading a record does not pay for a second validation.
"""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar as DefaultTypeVar

from cdc.events.values import UNAVAILABLE


class Op(StrEnum):
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"
    TRUNCATE = "t"
    MESSAGE = "m"


class Kind(StrEnum):
    """What a record is, decided before routing."""

    CHANGE = "change"  # c, u, d while streaming
    SNAPSHOT_READ = "snapshot_read"  # r, from an initial or incremental snapshot
    TRUNCATE = "truncate"
    MESSAGE = "message"  # pg_logical_emit_message
    TOMBSTONE = "tombstone"  # the null value after a delete, for log compaction
    HEARTBEAT = "heartbeat"
    TRANSACTION = "transaction"  # BEGIN / END metadata
    EVENT = "event"  # a domain event from the outbox table


class Snapshot(StrEnum):
    TRUE = "true"
    FIRST = "first"
    FIRST_IN_DATA_COLLECTION = "first_in_data_collection"
    LAST_IN_DATA_COLLECTION = "last_in_data_collection"
    LAST = "last"
    INCREMENTAL = "incremental"
    FALSE = "false"


_FROZEN = ConfigDict(frozen=True, populate_by_name=True)


class KafkaCoordinates(BaseModel):
    """Where a record was read from."""

    model_config = _FROZEN

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def header(self, name: str) -> bytes | None:
        """The last value of a header, or None."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _utc_from(ts_us: int | None, ts_ms: int | None) -> dt.datetime | None:
    if ts_us is not None:
        return dt.datetime.fromtimestamp(ts_us / 1_000_000, dt.UTC)
    if ts_ms is not None:
        return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)
    return None


class Source(BaseModel):
    """Where in PostgreSQL a change happened. Incremental snapshot rows have no txId or LSN."""

    model_config = _FROZEN

    version: str
    connector: str
    name: str
    db: str
    schema_: str = Field(alias="schema")
    table: str
    ts_ms: int
    ts_us: int | None = None
    ts_ns: int | None = None
    snapshot: Snapshot | None = None
    sequence: str | None = None
    tx_id: int | None = Field(default=None, alias="txId")
    lsn: int | None = None
    xmin: int | None = None

    @property
    def is_snapshot(self) -> bool:
        """Debezium sends null or "false" while streaming."""
        return self.snapshot is not None and self.snapshot is not Snapshot.FALSE

    @property
    def commit_time(self) -> dt.datetime:
        """When the transaction committed (for snapshot rows: when the row was read)."""
        time = _utc_from(self.ts_us, self.ts_ms)
        assert time is not None  # ts_ms is required
        return time


class TransactionBlock(BaseModel):
    """The position of a change in its transaction (`provide.transaction.metadata`)."""

    model_config = _FROZEN

    id: str
    total_order: int
    data_collection_order: int


class LogicalMessage(BaseModel):
    model_config = _FROZEN

    prefix: str
    content: bytes


Row = dict[str, Any]
# A handler's row model types `before` / `after` as `Change[Model]`; plain `Change` has dicts.
RowT = DefaultTypeVar("RowT", default=dict[str, Any])


class Change(BaseModel, Generic[RowT]):
    """One Debezium change event: a row created, updated, deleted or read, a truncate, or a
    logical decoding message."""

    model_config = _FROZEN

    op: Op
    before: RowT | None = None
    after: RowT | None = None
    source: Source
    ts_ms: int | None = None
    ts_us: int | None = None
    ts_ns: int | None = None
    transaction: TransactionBlock | None = None
    message: LogicalMessage | None = None
    key: Row | None = None
    kafka: KafkaCoordinates

    @property
    def kind(self) -> Kind:
        if self.op is Op.READ:
            return Kind.SNAPSHOT_READ
        if self.op is Op.TRUNCATE:
            return Kind.TRUNCATE
        if self.op is Op.MESSAGE:
            return Kind.MESSAGE
        return Kind.CHANGE

    @property
    def table(self) -> str:
        """`schema.table`; empty for logical decoding messages."""
        if not self.source.table:
            return ""
        return f"{self.source.schema_}.{self.source.table}"

    @property
    def row(self) -> RowT | None:
        """The row as it is now: `after`, or `before` for a delete."""
        return self.before if self.op is Op.DELETE else self.after

    @property
    def event_time(self) -> dt.datetime | None:
        """When Debezium processed the change."""
        return _utc_from(self.ts_us, self.ts_ms)

    def changed_columns(self) -> frozenset[str] | None:
        """Columns whose value differs between `before` and `after`.

        Every column for a create or a delete; None for an update whose `before` PostgreSQL
        did not send (REPLICA IDENTITY DEFAULT keeps only the key, if anything). Unchanged
        TOASTed columns never count as changed.
        """
        before, after = _columns(self.before), _columns(self.after)
        if self.op in (Op.CREATE, Op.READ):
            return frozenset(after or ())
        if self.op is Op.DELETE:
            return frozenset(before or ())
        if self.op is not Op.UPDATE or before is None or after is None:
            return None
        if not set(after) <= set(before):
            return None
        return frozenset(
            name
            for name, value in after.items()
            if value is not UNAVAILABLE
            and before[name] is not UNAVAILABLE
            and before[name] != value
        )

    @property
    def idempotency_key(self) -> str:
        """The same for every delivery of this change, including Debezium's own re-sends
        after a connector restart (new Kafka offsets, same LSN)."""
        src = self.source
        where = f"{src.lsn}/{src.tx_id}" if src.lsn is not None else f"snapshot@{src.ts_ms}"
        key = json.dumps(self.key, sort_keys=True, default=str, separators=(",", ":"))
        return f"{src.db}/{self.table or '-'}/{where}/{self.op.value}/{key}"


def _columns(row: Any) -> Row | None:
    """A row as a dict; a row model gives its declared columns."""
    if row is None or isinstance(row, dict):
        return row
    return dict(row)


class Tombstone(BaseModel):
    """The null-valued record Debezium writes after a delete, so compaction can drop the key."""

    model_config = _FROZEN

    table: str
    key: Row | None
    kafka: KafkaCoordinates
    kind: ClassVar[Kind] = Kind.TOMBSTONE


class Heartbeat(BaseModel):
    model_config = _FROZEN

    ts_ms: int
    server_name: str | None = None
    kafka: KafkaCoordinates
    kind: ClassVar[Kind] = Kind.HEARTBEAT
    table: ClassVar[str] = ""  # belongs to no table


class DataCollectionCount(BaseModel):
    model_config = _FROZEN

    data_collection: str
    event_count: int


class TransactionEvent(BaseModel):
    """A BEGIN or END record on `<prefix>.transaction`."""

    model_config = _FROZEN

    status: Literal["BEGIN", "END"]
    id: str
    ts_ms: int
    event_count: int | None = None
    data_collections: tuple[DataCollectionCount, ...] | None = None
    kafka: KafkaCoordinates
    kind: ClassVar[Kind] = Kind.TRANSACTION
    table: ClassVar[str] = ""  # belongs to no table


PayloadT = DefaultTypeVar("PayloadT", default=Any)


class DomainEvent(BaseModel, Generic[PayloadT]):
    """A domain event written with `cdc.emit` and routed by Debezium's Outbox Event Router:
    one per outbox row, on the topic of its aggregate type, keyed by the aggregate's id.
    A handler's payload model types ``payload`` as `DomainEvent[Model]`."""

    model_config = _FROZEN

    id: str  # the outbox row's uuid: the same for every delivery of the event
    type: str
    aggregate_type: str
    aggregate_id: str
    payload: PayloadT
    kafka: KafkaCoordinates
    kind: ClassVar[Kind] = Kind.EVENT
    table: ClassVar[str] = ""  # routed by type, not by table

    @property
    def idempotency_key(self) -> str:
        return f"event/{self.id}"

    @property
    def occurred_at(self) -> dt.datetime | None:
        """When Debezium read the event from the log (the Kafka record's timestamp)."""
        return _utc_from(None, self.kafka.timestamp_ms)


Event = Change | Tombstone | Heartbeat | TransactionEvent | DomainEvent

_M = TypeVar("_M", bound=BaseModel)


def trusted(model: type[_M], values: dict[str, Any]) -> _M:
    """A model from values the decoder has already checked, with every field given.

    What `model_construct` does without its per-field bookkeeping, which costs more than the
    rest of decoding a small record; `test_trusted_equals_model_construct` keeps it honest.
    """
    obj = _new(model)  # what model.__new__ is, without the lookup through the class
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


_new = object.__new__
_set = object.__setattr__
