"""The records a Debezium PostgreSQL connector writes, as typed objects.

A change is built from the parsed record without converting it: its rows (`Columns`) convert
a column when it is read, its source and key are read when asked for. The rarer records are
pydantic models, built with `trusted` from values the decoder has checked.
"""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar as DefaultTypeVar

from cdc.events.columns import Columns
from cdc.events.source import KafkaCoordinates, Source, _utc_from
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


# arbitrary types: `KafkaCoordinates` and `Columns` are plain classes, cheap to make.
_FROZEN = ConfigDict(frozen=True, populate_by_name=True, arbitrary_types_allowed=True)


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
# A handler's row model types `before` / `after` as `Change[Model]`; plain `Change` has
# `Columns`, converted as they are read.
RowT = DefaultTypeVar("RowT", default=Columns)
_UNREAD: Any = object()


class KeyReader(Protocol):
    def read_key(self, raw: bytes, kafka: KafkaCoordinates) -> Row | None: ...


class Change(Generic[RowT]):
    """One Debezium change event: a row created, updated, deleted or read, a truncate, or a
    logical decoding message. The key is read when first asked for."""

    __slots__ = (
        "_key",
        "_key_raw",
        "_keys",
        "after",
        "before",
        "kafka",
        "message",
        "op",
        "source",
        "transaction",
        "ts_ms",
        "ts_ns",
        "ts_us",
    )

    op: Op
    before: RowT | None
    after: RowT | None
    source: Source
    kafka: KafkaCoordinates

    def __init__(
        self,
        op: Op,
        before: RowT | None,
        after: RowT | None,
        source: Source,
        kafka: KafkaCoordinates,
        key: Row | None = None,
        ts_ms: int | None = None,
        ts_us: int | None = None,
        ts_ns: int | None = None,
        transaction: TransactionBlock | None = None,
        message: LogicalMessage | None = None,
    ) -> None:
        self.op = op
        self.before = before
        self.after = after
        self.source = source
        self.kafka = kafka
        self._key = key
        self._key_raw: bytes | None = None
        self._keys: KeyReader | None = None
        self.ts_ms = ts_ms
        self.ts_us = ts_us
        self.ts_ns = ts_ns
        self.transaction = transaction
        self.message = message

    @property
    def key(self) -> Row | None:
        """The record's key (the row's primary key, or its `message.key.columns`)."""
        key = self._key
        if key is _UNREAD:
            assert self._keys is not None
            assert self._key_raw is not None
            key = self._key = self._keys.read_key(self._key_raw, self.kafka)
        return key

    def with_rows(self, before: Any, after: Any) -> Change[Any]:
        """This change with other `before` / `after` (a row model's)."""
        other: Change[Any] = _new(Change)
        for name in Change.__slots__:
            _set(other, name, getattr(self, name))
        other.before, other.after = before, after
        return other

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
        raw = self.source._raw
        if not raw["table"]:
            return ""
        return f"{raw['schema']}.{raw['table']}"

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
        TOASTed columns never count as changed. Compared as Debezium encoded them: nothing
        is converted."""
        before, after = _columns(self.before), _columns(self.after)
        if self.op in (Op.CREATE, Op.READ):
            return frozenset(after or ())
        if self.op is Op.DELETE:
            return frozenset(before or ())
        if self.op is not Op.UPDATE or before is None or after is None:
            return None
        if not after.keys() <= before.keys():
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
        lsn = src.lsn
        where = f"{lsn}/{src.tx_id}" if lsn is not None else f"snapshot@{src.ts_ms}"
        key = json.dumps(self.key, sort_keys=True, default=str, separators=(",", ":"))
        return f"{src.db}/{self.table or '-'}/{where}/{self.op.value}/{key}"

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.op,
            self.before,
            self.after,
            self.source,
            self.key,
            self.ts_ms,
            self.ts_us,
            self.ts_ns,
            self.transaction,
            self.message,
            self.kafka,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Change) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Change(op={self.op.value!r}, table={self.table!r}, kafka={self.kafka})"


def _columns(row: Any) -> Row | None:
    """A row's values as compared: as Debezium encoded them; a row model's declared columns."""
    if row is None or isinstance(row, dict):
        return row
    if isinstance(row, Columns):
        return row.raw()
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
