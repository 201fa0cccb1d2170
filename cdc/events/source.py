"""Where a record comes from: its Kafka coordinates, and the source block that says where in
PostgreSQL its change happened."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from cdc.events.columns import Mismatch


class Snapshot(StrEnum):
    TRUE = "true"
    FIRST = "first"
    FIRST_IN_DATA_COLLECTION = "first_in_data_collection"
    LAST_IN_DATA_COLLECTION = "last_in_data_collection"
    LAST = "last"
    INCREMENTAL = "incremental"
    FALSE = "false"


class KafkaCoordinates:
    """Where a record was read from."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp_ms", "topic")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None = None,
        headers: tuple[tuple[str, bytes | None], ...] = (),
        key: bytes | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp_ms = timestamp_ms
        self.headers = headers
        self.key = key  # the record's key as it was read (bytes of whatever encoding)

    def header(self, name: str) -> bytes | None:
        """The last value of a header, or None."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None

    def _fields(self) -> tuple[Any, ...]:
        return (self.topic, self.partition, self.offset, self.timestamp_ms, self.headers)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KafkaCoordinates) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"KafkaCoordinates({self}, timestamp_ms={self.timestamp_ms})"

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _utc_from(ts_us: int | None, ts_ms: int | None) -> dt.datetime | None:
    if ts_us is not None:
        return dt.datetime.fromtimestamp(ts_us / 1_000_000, dt.UTC)
    if ts_ms is not None:
        return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)
    return None


_SNAPSHOTS = {s.value: s for s in Snapshot}


class Source:
    """Where in PostgreSQL a change happened: Debezium's `source` block, read as needed.
    Incremental snapshot rows have no txId or LSN.

    `check` makes sure of what routing needs (database, schema, table, ts_ms, the snapshot
    marker); the other fields are checked when read, a wrong one raising `Mismatch`."""

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[str, Any]) -> None:
        self._raw = raw

    @classmethod
    def check(cls, raw: Any) -> Source:
        if type(raw) is not dict:
            raise Mismatch("source", f"expected an object, got {_typename(raw)}")
        get = raw.get
        if type(get("db")) is not str or type(get("schema")) is not str:
            name = "db" if type(get("db")) is not str else "schema"
            raise Mismatch(f"source.{name}", f"expected a string, got {_typename(get(name))}")
        if type(get("table")) is not str:
            raise Mismatch("source.table", f"expected a string, got {_typename(get('table'))}")
        if type(get("ts_ms")) is not int:
            raise Mismatch("source.ts_ms", f"expected an integer, got {_typename(get('ts_ms'))}")
        snapshot = get("snapshot")
        if snapshot is not None and snapshot not in _SNAPSHOTS:
            raise Mismatch("source.snapshot", f"unknown snapshot marker {snapshot!r:.60}")
        return cls(raw)

    def _text(self, name: str) -> str:
        value = self._raw.get(name)
        if type(value) is not str:
            raise Mismatch(f"source.{name}", f"expected a string, got {_typename(value)}")
        return value

    def _int(self, name: str) -> int | None:
        value = self._raw.get(name)
        if value is None or type(value) is int:
            return value
        raise Mismatch(f"source.{name}", f"expected an integer, got {_typename(value)}")

    @property
    def version(self) -> str:
        return self._text("version")

    @property
    def connector(self) -> str:
        return self._text("connector")

    @property
    def name(self) -> str:
        return self._text("name")

    @property
    def db(self) -> str:
        return self._raw["db"]  # type: ignore[no-any-return]

    @property
    def schema(self) -> str:
        return self._raw["schema"]  # type: ignore[no-any-return]

    schema_ = schema

    @property
    def table(self) -> str:
        return self._raw["table"]  # type: ignore[no-any-return]

    @property
    def ts_ms(self) -> int:
        return self._raw["ts_ms"]  # type: ignore[no-any-return]

    @property
    def ts_us(self) -> int | None:
        return self._int("ts_us")

    @property
    def ts_ns(self) -> int | None:
        return self._int("ts_ns")

    @property
    def snapshot(self) -> Snapshot | None:
        marker = self._raw.get("snapshot")
        return None if marker is None else _SNAPSHOTS[marker]

    @property
    def sequence(self) -> str | None:
        value = self._raw.get("sequence")
        return None if value is None else self._text("sequence")

    @property
    def tx_id(self) -> int | None:
        return self._int("txId")

    @property
    def lsn(self) -> int | None:
        return self._int("lsn")

    @property
    def xmin(self) -> int | None:
        return self._int("xmin")

    @property
    def is_snapshot(self) -> bool:
        """Debezium sends null or "false" while streaming."""
        marker = self._raw.get("snapshot")
        return marker is not None and marker != "false"

    @property
    def commit_time(self) -> dt.datetime:
        """When the transaction committed (for snapshot rows: when the row was read)."""
        time = _utc_from(self.ts_us, self.ts_ms)
        assert time is not None  # ts_ms is required
        return time

    def to_dict(self) -> dict[str, Any]:
        return dict(self._raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source) and self._raw == other._raw

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Source({self._raw!r})"


def _typename(value: Any) -> str:
    return "null" if value is None else type(value).__name__
