"""Debezium PostgreSQL connector config derived from the watched-tables file."""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg import sql

from cdc.tables.config import Encoding, TableName, WatchedTables

CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
EVENT_ROUTER = "io.debezium.transforms.outbox.EventRouter"
TOPIC_NAME_MATCHES = "org.apache.kafka.connect.transforms.predicates.TopicNameMatches"
# Where the Outbox Event Router puts the columns the consumer routes by.
EVENT_TYPE_HEADER = "eventType"
AGGREGATE_TYPE_HEADER = "aggregateType"
TRACEPARENT_HEADER = "traceparent"  # cdc.tracing.HEADER
EVENT_ID_HEADER = "id"
AVRO_CONVERTER = "io.apicurio.registry.utils.converter.AvroConverter"
# Ours (debezium/transforms): the Avro converter would turn a NULL into the column's DEFAULT.
DROP_NULLABLE_DEFAULTS = "dev.cdc.connect.DropNullableDefaults"


# Numerics are text in `decimal.handling.mode=string`: their schema carries the source column
# type, which tells them from text columns. (Debezium matches each name as
# `<schema>.<table>.<TYPE>`, and `_NUMERIC` is an array of them.)
PROPAGATED_SOURCE_TYPES = ",".join(
    rf".+\.{array}{name}" for name in ("NUMERIC", "DECIMAL", "MONEY") for array in ("", "_")
)


@dataclass(frozen=True)
class DatabaseEndpoint:
    """How Kafka Connect reaches PostgreSQL and the registry."""

    host: str
    port: int
    database: str
    user: str
    # The password itself or a Connect config-provider reference such as
    # ``${env:CDC_DEBEZIUM_PASSWORD}``.
    password: str
    registry_url: str = ""


def _regex(*parts: str) -> str:
    # Debezium include/exclude lists are regular expressions matched against the whole name.
    return r"\.".join(re.escape(p) for p in parts)


def heartbeat_action_query(table: TableName) -> str:
    # Debezium runs this text as is: quoted by psycopg, like every statement we run ourselves.
    return (
        sql.SQL(
            "INSERT INTO {} (id, ts) VALUES (1, now()) "
            "ON CONFLICT (id) DO UPDATE SET ts = EXCLUDED.ts"
        )
        .format(sql.Identifier(table.schema_, table.table))
        .as_string()
    )


def _converters(watched: WatchedTables, registry_url: str) -> dict[str, str]:
    encoding = watched.connector.encoding
    if encoding is Encoding.AVRO:
        out: dict[str, str] = {}
        for side in ("key", "value"):
            out |= {
                f"{side}.converter": AVRO_CONVERTER,
                f"{side}.converter.apicurio.registry.url": f"{registry_url}/apis/registry/v2",
                f"{side}.converter.apicurio.registry.auto-register": "true",
                f"{side}.converter.apicurio.registry.find-latest": "true",
                # Confluent wire format: magic byte + 4-byte content id, no headers.
                f"{side}.converter.apicurio.registry.as-confluent": "true",
                f"{side}.converter.apicurio.registry.use-id": "contentId",
                f"{side}.converter.apicurio.registry.headers.enabled": "false",
            }
        return out
    schemas = "true" if encoding is Encoding.JSON else "false"
    return {
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": schemas,
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": schemas,
        # Otherwise a NULL in a column with a default is rendered as the default.
        "value.converter.replace.null.with.default": "false",
    }


def connector_config(watched: WatchedTables, db: DatabaseEndpoint) -> dict[str, str]:
    """The connector config map for ``PUT /connectors/<name>/config``."""
    opts = watched.connector
    tables = captured_tables(watched)
    excluded = [
        _regex(str(t.schema_), t.table, col)
        for t in watched.table_names()
        for col in watched.tables[str(t)].exclude_columns
    ]
    config = {
        "connector.class": CONNECTOR_CLASS,
        "tasks.max": "1",
        "database.hostname": db.host,
        "database.port": str(db.port),
        "database.dbname": db.database,
        "database.user": db.user,
        "database.password": db.password,
        "topic.prefix": opts.topic_prefix,
        "plugin.name": "pgoutput",
        "slot.name": opts.slot,
        "publication.name": opts.publication,
        # We create and maintain the publication ourselves, so the Debezium role needs
        # neither superuser nor table ownership.
        "publication.autocreate.mode": "disabled",
        "table.include.list": ",".join(_regex(t.schema_, t.table) for t in tables),
        "snapshot.mode": opts.snapshot_mode,
        "heartbeat.interval.ms": str(opts.heartbeat_interval_ms),
        "poll.interval.ms": str(opts.poll_interval_ms),
        "heartbeat.action.query": heartbeat_action_query(watched.heartbeat_table),
        "signal.enabled.channels": "source",
        "signal.data.collection": str(watched.signal_table),
        "provide.transaction.metadata": str(opts.transaction_metadata).lower(),
        "tombstones.on.delete": "true",
        "skipped.operations": "none",
        # Text keeps every digit and NaN / ±Infinity, which the binary form cannot carry;
        # the propagated source type tells a numeric from a text column.
        "decimal.handling.mode": "string",
        # Columns of types Debezium does not know (line, box, polygon, circle, composite
        # types...) come as the bytes of their text rather than being left out of the row.
        "include.unknown.datatypes": "true",
        "datatype.propagate.source.type": PROPAGATED_SOURCE_TYPES,
        "time.precision.mode": "adaptive",
        # The numeric mode folds months into 30.4375-day averages; the ISO string keeps
        # years, months and days apart, so nothing is lost on the way to Python.
        "interval.handling.mode": "string",
        "topic.creation.default.partitions": str(opts.topic_partitions),
        "topic.creation.default.replication.factor": str(opts.topic_replication_factor),
    }
    if opts.exactly_once:
        # Refused by a worker without exactly.once.source.support: never silently less.
        config |= {"exactly.once.support": "required", "transaction.boundary": "poll"}
    if opts.transaction_metadata:
        # One partition: the ENDs in commit order, which is the order transaction handlers
        # run in (the other settings are the default group's).
        config |= {
            "topic.creation.groups": "transactions",
            "topic.creation.transactions.include": re.escape(f"{opts.topic_prefix}.transaction"),
            "topic.creation.transactions.partitions": "1",
        }
    config |= watched.limits.connector()
    if excluded:
        config["column.exclude.list"] = ",".join(excluded)
    keys = [
        f"{_regex(str(t.schema_), t.table)}:{','.join(watched.tables[str(t)].key_columns)}"
        for t in watched.table_names()
        if watched.tables[str(t)].key_columns
    ]
    if keys:
        config["message.key.columns"] = ";".join(keys)
    if opts.encoding is Encoding.AVRO:
        config["schema.name.adjustment.mode"] = "avro"
        config["field.name.adjustment.mode"] = "avro"
    config |= _converters(watched, db.registry_url)
    transforms = {**_nulls_kept(watched), **_outbox_router(watched)}
    if transforms:
        config["transforms"] = ",".join(transforms)
        config |= {k: v for t in transforms.values() for k, v in t.items()}
    return config


def _nulls_kept(watched: WatchedTables) -> dict[str, dict[str, str]]:
    """For Avro, every record's schemas without the defaults of optional fields (Debezium
    puts each column's DEFAULT there), so the converter, which reads a NULL as the field's
    default and has no option not to, sees none and registers none. First, so the outbox
    router reads the rows as they are too."""
    if watched.connector.encoding is not Encoding.AVRO:
        return {}
    return {"nulls": {"transforms.nulls.type": DROP_NULLABLE_DEFAULTS}}


def captured_tables(watched: WatchedTables) -> list[TableName]:
    """The tables Debezium reads: the watched ones and the outbox."""
    outbox = watched.outbox_table
    return [*watched.table_names(), *([outbox] if outbox is not None else [])]


def _outbox_router(watched: WatchedTables) -> dict[str, dict[str, str]]:
    """The Outbox Event Router, applied to the outbox table's records only: an outbox row
    becomes a record on ``<outbox topic prefix>.<aggregatetype>``, keyed by aggregateid, its
    payload the value, with the event id, type and aggregate type in headers. The payload
    stays JSON text (not expanded), so no schema is inferred from it in any encoding."""
    table = watched.outbox_table
    if table is None or watched.outbox is None:
        return {}
    return {
        "outbox": {
            "transforms.outbox.type": EVENT_ROUTER,
            "transforms.outbox.predicate": "outboxTable",
            "transforms.outbox.route.by.field": "aggregatetype",
            "transforms.outbox.route.topic.replacement": (
                watched.outbox.topic_prefix + ".${routedByValue}"
            ),
            "transforms.outbox.table.field.event.id": "id",
            "transforms.outbox.table.field.event.key": "aggregateid",
            "transforms.outbox.table.field.event.payload": "payload",
            "transforms.outbox.table.fields.additional.placement": (
                f"type:header:{EVENT_TYPE_HEADER},aggregatetype:header:{AGGREGATE_TYPE_HEADER},"
                f"traceparent:header:{TRACEPARENT_HEADER}"
            ),
            # Rows are inserted and deleted in the same transaction; an update is a mistake.
            "transforms.outbox.table.op.invalid.behavior": "warn",
            "predicates": "outboxTable",
            "predicates.outboxTable.type": TOPIC_NAME_MATCHES,
            "predicates.outboxTable.pattern": _regex(
                watched.connector.topic_prefix, table.schema_, table.table
            ),
        }
    }


def outbox_topic_pattern(watched: WatchedTables) -> str | None:
    """The subscription pattern of every aggregate type's topic (librdkafka regex)."""
    if watched.outbox is None:
        return None
    return f"^{re.escape(watched.outbox.topic_prefix)}\\..+"


def topic_prefixes(watched: WatchedTables) -> list[str]:
    """What the names of the topics Debezium writes for the file start with."""
    prefixes = [f"{watched.connector.topic_prefix}."]
    if watched.outbox is not None:
        prefixes.append(f"{watched.outbox.topic_prefix}.")
    return prefixes


def data_topic(watched: WatchedTables, table: TableName) -> str:
    return f"{watched.connector.topic_prefix}.{table.schema_}.{table.table}"


def heartbeat_topic(watched: WatchedTables) -> str:
    return f"__debezium-heartbeat.{watched.connector.topic_prefix}"
