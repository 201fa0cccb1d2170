"""The watched-tables file: which tables to capture and how, declared once in the user's repo."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cdc.errors import ConfigError
from cdc.tables.limits import (
    DEFAULT_MAX_RECORD_BYTES,
    LARGEST_MAX_RECORD_BYTES,
    MIB,
    RecordLimits,
)
from cdc.tables.workloads import WorkloadName, WorkloadOptions

# Plain unquoted PostgreSQL identifiers only: names reach generated SQL (always quoted),
# Debezium regex lists and Kafka topic names, and a strict shape keeps all three exact. At
# most 63 bytes (NAMEDATALEN - 1): PostgreSQL would silently truncate a longer one. No `$`,
# which PostgreSQL allows but a topic name does not (Debezium would rename the topic).
_NAME = r"[a-z_][a-z0-9_]{0,62}"
# \Z, not $: Python's $ also matches before a trailing newline ("users\n").
IDENTIFIER = re.compile(rf"^{_NAME}\Z")
# pydantic checks patterns with Rust's regex, where $ is the end of the text.
Identifier = Annotated[str, Field(pattern=rf"^{_NAME}$")]


class ReplicaIdentity(StrEnum):
    DEFAULT = "default"
    FULL = "full"


class Encoding(StrEnum):
    JSON = "json"  # JsonConverter with schemas.enable=true
    JSON_NO_SCHEMA = "json-noschema"
    AVRO = "avro"  # Confluent wire format through the registry


class TableOptions(BaseModel):
    """Per-table options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replica_identity: ReplicaIdentity = ReplicaIdentity.DEFAULT
    snapshot_reads: bool = False
    exclude_columns: tuple[Identifier, ...] = ()
    # The record key (and so the partition, per-key order and concurrency) by these columns
    # rather than the primary key: Debezium's `message.key.columns`.
    key_columns: tuple[Identifier, ...] = ()
    # Captured, but their values are masked wherever cdc shows a row (the console, its log).
    sensitive_columns: tuple[Identifier, ...] = ()

    @model_validator(mode="after")
    def _key_is_sent(self) -> TableOptions:
        excluded = sorted(set(self.key_columns) & set(self.exclude_columns))
        if excluded:
            raise ValueError(f"key column(s) {', '.join(excluded)} are also excluded columns")
        if len(set(self.key_columns)) != len(self.key_columns):
            raise ValueError("key_columns names a column twice")
        return self


class ConnectorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Part of Kafka Connect's REST paths (/connectors/<name>/...): "." and ".." are refused.
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")] = "cdc"
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,100}$")] = "cdc"
    slot: Identifier = "cdc"
    publication: Identifier = "cdc"
    internal_schema: Identifier = "cdc"
    encoding: Encoding = Encoding.JSON
    snapshot_mode: Literal["initial", "no_data", "when_needed", "always", "initial_only"] = (
        "initial"
    )
    heartbeat_interval_ms: Annotated[int, Field(ge=0)] = 10_000
    # How long Debezium sleeps when it finds no change queued. Its default, 500 ms, hands
    # changes over in half-second bursts: that much latency, and the last of each burst
    # queued behind the rest at the consumer. A wake-up every 20 ms costs nothing.
    poll_interval_ms: Annotated[int, Field(ge=1)] = 20
    transaction_metadata: bool = False
    # Kafka Connect's exactly-once source delivery (KIP-618): Debezium's records and its
    # offsets in one Kafka transaction, so a Connect crash re-sends nothing. The workers
    # must have it enabled (`cdc stack up --exactly-once`; the deploy outputs follow this).
    exactly_once: bool = False
    topic_partitions: Annotated[int, Field(ge=-1)] = -1
    topic_replication_factor: Annotated[int, Field(ge=-1)] = -1
    # The largest change record, in bytes, that flows end to end (see cdc.tables.limits): a
    # larger one stops the connector's task, loudly, until this is raised.
    max_record_bytes: Annotated[int, Field(ge=MIB, le=LARGEST_MAX_RECORD_BYTES)] = (
        DEFAULT_MAX_RECORD_BYTES
    )

    @field_validator("name")
    @classmethod
    def _not_a_path_segment(cls, name: str) -> str:
        if set(name) == {"."}:
            raise ValueError(f"connector name {name!r} would be a path segment of its own")
        return name


class OutboxOptions(BaseModel):
    """The outbox table: domain events written with `cdc.emit`, routed by Debezium's Outbox
    Event Router to ``<topic_prefix>.<aggregate type>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Annotated[str, Field(pattern=rf"^{_NAME}\.{_NAME}$")] = "public.outbox"
    # 48 + "." + an aggregate type of at most 200 (`cdc.emit`) fits Kafka's 249.
    topic_prefix: Annotated[
        str, Field(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", max_length=48)
    ] = "outbox.event"


class ScheduleOptions(BaseModel):
    """A recurring event (`cdc.schedule`): ``event`` fired at each due time of ``every``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: str  # a cron expression (UTC) or an interval: "30s", "5m", "2h", "1d"
    event: Annotated[str, Field(min_length=1, max_length=255)]
    aggregate_type: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,200}$")] = "schedule"
    data: dict[str, Any] = {}

    @field_validator("every")
    @classmethod
    def _parses(cls, value: str) -> str:
        from cdc.schedule.spec import parse_spec  # croniter, only for a file with schedules

        parse_spec(value)
        return value


class TableName(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_: Identifier = Field(alias="schema")
    table: Identifier

    def __str__(self) -> str:
        return f"{self.schema_}.{self.table}"


class WatchedTables(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connector: ConnectorOptions = ConnectorOptions()
    tables: dict[str, TableOptions] = {}
    outbox: OutboxOptions | None = None
    # Lanes of handlers, each consumed by a group of its own (`default` needs no entry).
    workloads: dict[WorkloadName, WorkloadOptions] = {}
    schedules: dict[Annotated[str, Field(min_length=1, max_length=200)], ScheduleOptions] = {}

    @model_validator(mode="after")
    def _watches_something(self) -> WatchedTables:
        if not self.tables and self.outbox is None:
            raise ValueError("at least one table (or an outbox) must be watched")
        if self.outbox is None:
            if self.schedules:
                raise ValueError("schedules fire through the outbox: declare `outbox:` too")
            return self
        if self.outbox.table in self.tables:
            raise ValueError(f"{self.outbox.table} is the outbox: declare it under `outbox:` only")
        prefix, ours = self.outbox.topic_prefix, self.connector.topic_prefix
        if prefix == ours or prefix.startswith(f"{ours}."):
            # Its topics would take in the tables' and the dead-letter topic.
            raise ValueError(
                f"outbox.topic_prefix {prefix!r} must not be connector.topic_prefix {ours!r} "
                "or under it"
            )
        return self

    @field_validator("tables")
    @classmethod
    def _names(cls, tables: dict[str, TableOptions]) -> dict[str, TableOptions]:
        for name in tables:
            parts = name.split(".")
            if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts):
                raise ValueError(
                    f"table {name!r} must be written schema.table with lowercase "
                    "unquoted identifiers"
                )
        return tables

    def table_names(self) -> list[TableName]:
        return [TableName(schema=s, table=t) for s, t in (name.split(".") for name in self.tables)]

    @property
    def outbox_table(self) -> TableName | None:
        if self.outbox is None:
            return None
        schema, table = self.outbox.table.split(".")
        return TableName(schema=schema, table=table)

    def sensitive_columns(self, table: str) -> frozenset[str]:
        """The columns of ``table`` (``schema.table``) whose values are never shown."""
        options = self.tables.get(table)
        return frozenset(options.sensitive_columns) if options is not None else frozenset()

    @property
    def limits(self) -> RecordLimits:
        return RecordLimits(self.connector.max_record_bytes)

    @property
    def heartbeat_table(self) -> TableName:
        return TableName(schema=self.connector.internal_schema, table="heartbeat")

    @property
    def signal_table(self) -> TableName:
        return TableName(schema=self.connector.internal_schema, table="signal")


def parse_watched_tables(text: str, source: str = "<watched tables>") -> WatchedTables:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must be a mapping with a 'tables' key"])
    try:
        return WatchedTables.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            f" (got {err['input']!r})"
            if err["type"] != "missing"
            else f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError(source, problems) from exc


def load_watched_tables(path: Path) -> WatchedTables:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    return parse_watched_tables(text, str(path))
