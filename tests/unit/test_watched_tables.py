"""The watched-tables file and what is derived from it, without the stack."""

from __future__ import annotations

import pytest

from cdc import ConfigError
from cdc.tables.config import Encoding, ReplicaIdentity, parse_watched_tables
from cdc.tables.connector import DatabaseEndpoint, connector_config, heartbeat_topic
from cdc.tables.limits import MIB, RecordLimits

GOOD = """
connector:
  name: shop
  topic_prefix: shop
  slot: shop_slot
  publication: shop_pub
  heartbeat_interval_ms: 2000
tables:
  public.users:
    replica_identity: full
    snapshot_reads: true
    exclude_columns: [password_hash, totp_secret]
  sales.orders:
    key_columns: [account_id, region]
"""
DB = DatabaseEndpoint(
    host="db",
    port=5432,
    database="app",
    user="cdc_debezium",
    password="${env:CDC_DEBEZIUM_PASSWORD}",
    registry_url="http://reg:8080",
)


def test_parses_tables_and_defaults() -> None:
    watched = parse_watched_tables(GOOD)
    users = watched.tables["public.users"]
    assert users.replica_identity is ReplicaIdentity.FULL
    assert users.snapshot_reads is True
    assert users.exclude_columns == ("password_hash", "totp_secret")
    orders = watched.tables["sales.orders"]
    assert orders.replica_identity is ReplicaIdentity.DEFAULT
    assert orders.snapshot_reads is False
    assert [str(t) for t in watched.table_names()] == ["public.users", "sales.orders"]


def test_connector_config_is_derived_from_the_file() -> None:
    config = connector_config(parse_watched_tables(GOOD), DB)
    assert config["plugin.name"] == "pgoutput"
    assert config["slot.name"] == "shop_slot"
    assert config["publication.name"] == "shop_pub"
    assert config["publication.autocreate.mode"] == "disabled"
    assert config["topic.prefix"] == "shop"
    assert config["table.include.list"] == r"public\.users,sales\.orders"
    assert config["column.exclude.list"] == (
        r"public\.users\.password_hash,public\.users\.totp_secret"
    )
    assert config["message.key.columns"] == r"sales\.orders:account_id,region"
    assert config["heartbeat.interval.ms"] == "2000"
    assert config["poll.interval.ms"] == "20"  # not Debezium's 500: half-second bursts
    assert config["heartbeat.action.query"].startswith('INSERT INTO "cdc"."heartbeat"')
    assert config["signal.data.collection"] == "cdc.signal"
    assert config["database.password"] == "${env:CDC_DEBEZIUM_PASSWORD}"
    assert config["value.converter.schemas.enable"] == "true"
    assert config["value.converter.replace.null.with.default"] == "false"


def _with_limit(value: str) -> str:
    return GOOD.replace(
        "  publication: shop_pub\n", f"  publication: shop_pub\n  max_record_bytes: {value}\n"
    )


def test_one_record_limit_sets_every_kafka_limit_on_the_way() -> None:
    default = connector_config(parse_watched_tables(GOOD), DB)
    assert default["producer.override.max.request.size"] == str(32 * MIB)
    raised = parse_watched_tables(_with_limit("20000000"))
    config = connector_config(raised, DB)
    limits = raised.limits
    assert limits == RecordLimits(20_000_000)
    assert config["producer.override.max.request.size"] == "20000000"
    assert config["producer.override.buffer.memory"] == "40000000"  # above the record
    assert config["producer.override.compression.type"] == "lz4"
    # The compressed batch of data that does not compress is a little larger than the record.
    assert config["topic.creation.default.max.message.bytes"] == str(limits.topic)
    assert 20_000_000 < limits.topic < 21_000_000
    assert limits.parked == 40_000_000  # the key once more and our headers fit in a parked copy
    fetch = limits.consumer(limits.parked)
    assert fetch["fetch.max.bytes"] == 52_428_800  # librdkafka's default is larger already
    assert fetch["receive.message.max.bytes"] == 100_000_000
    largest = RecordLimits(48 * MIB)
    assert largest.consumer(largest.parked) == {
        "fetch.max.bytes": 96 * MIB,
        "receive.message.max.bytes": 96 * MIB + 512,
    }
    for wrong in ("1000", str(49 * MIB)):
        with pytest.raises(ConfigError, match=r"connector\.max_record_bytes"):
            parse_watched_tables(_with_limit(wrong))


def test_encodings_pick_converters() -> None:
    base = parse_watched_tables(GOOD)
    for encoding, converter, schemas in [
        (Encoding.JSON_NO_SCHEMA, "org.apache.kafka.connect.json.JsonConverter", "false"),
        (Encoding.AVRO, "io.apicurio.registry.utils.converter.AvroConverter", None),
    ]:
        watched = base.model_copy(
            update={"connector": base.connector.model_copy(update={"encoding": encoding})}
        )
        config = connector_config(watched, DB)
        assert config["value.converter"] == converter
        assert config["key.converter"] == converter
        assert config.get("value.converter.schemas.enable") == schemas
    avro = connector_config(
        base.model_copy(
            update={"connector": base.connector.model_copy(update={"encoding": Encoding.AVRO})}
        ),
        DB,
    )
    assert avro["value.converter.apicurio.registry.url"] == "http://reg:8080/apis/registry/v2"
    assert avro["value.converter.apicurio.registry.as-confluent"] == "true"
    assert avro["schema.name.adjustment.mode"] == "avro"
    # The Avro converter would read a NULL in a column with a DEFAULT as the default.
    assert avro["transforms"] == "nulls"
    assert avro["transforms.nulls.type"] == "dev.cdc.connect.DropNullableDefaults"
    assert heartbeat_topic(base) == "__debezium-heartbeat.shop"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "tables:\n  public.users:\n    replica_identity: sometimes\n",
            "tables.public.users.replica_identity",
        ),
        (
            "tables:\n  public.users:\n    snapshot_read: true\n",
            "tables.public.users.snapshot_read: Extra inputs are not permitted",
        ),
        ("tables:\n  users: {}\n", "must be written schema.table"),
        (
            'tables:\n  public.users:\n    exclude_columns: ["x; DROP TABLE y"]\n',
            "tables.public.users.exclude_columns.0",
        ),
        ('tables:\n  "public.users; drop": {}\n', "must be written schema.table"),
        ("tables: {}\n", "at least one table"),
        ("connector:\n  slot: Bad-Slot\ntables:\n  public.a: {}\n", "connector.slot"),
        ("tables: [public.users\n", "not valid YAML"),
        ("- public.users\n", "mapping with a 'tables' key"),
        ("connector: {}\n", "at least one table (or an outbox)"),
        ("tables:\n  public.outbox: {}\noutbox: {}\n", "declare it under `outbox:` only"),
        ("outbox:\n  table: outbox\n", "outbox.table: String should match"),
        ("outbox:\n  topic_prefix: 'a..b'\n", "outbox.topic_prefix"),
        ("outbox:\n  topic_prefix: cdc\n", "must not be connector.topic_prefix 'cdc'"),
        ("outbox:\n  topic_prefix: cdc.events\n", "or under it"),
        (f"outbox:\n  topic_prefix: {'x' * 49}\n", "at most 48 characters"),
        # Python's $ matches before a final newline; the names must not.
        ('tables:\n  "public.users\\n": {}\n', "must be written schema.table"),
        ('tables:\n  public.users:\n    exclude_columns: ["x\\n"]\n', "exclude_columns.0"),
        # Valid in PostgreSQL, not in a Kafka topic name.
        ("tables:\n  public.a$b: {}\n", "must be written schema.table"),
        (f"tables:\n  public.{'a' * 64}: {{}}\n", "must be written schema.table"),
        ("connector:\n  name: '..'\ntables:\n  public.a: {}\n", "path segment"),
        (
            "tables:\n  public.a:\n    key_columns: [k]\n    exclude_columns: [k]\n",
            "key column(s) k are also excluded columns",
        ),
        ("tables:\n  public.a:\n    key_columns: [k, k]\n", "names a column twice"),
        ('tables:\n  public.a:\n    key_columns: ["K"]\n', "key_columns.0"),
    ],
)
def test_bad_files_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_watched_tables(text, "cdc.yaml")
    assert "cdc.yaml" in str(info.value)
    assert fragment in str(info.value)
