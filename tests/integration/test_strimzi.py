"""Where Strimzi owns the connector: `cdc db prepare` does the database half, and the
KafkaConnector we render is put into Kafka Connect as Strimzi's operator puts it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema

from cdc.check import run_check
from cdc.connect import prepare_database
from cdc.deploy.kubernetes import kafka_connector
from cdc.tables.sql import publication_tables
from cdc.testing import RecordReader
from tests.deploy.schemas import strimzi_schemas
from tests.integration.conftest import Pipeline


def test_prepare_then_the_kafka_connector_streams(pipeline: Pipeline) -> None:
    items = pipeline.table("items")
    pipeline.sql(f"CREATE TABLE {items} (id int PRIMARY KEY, name text)")
    pipeline.write_file({items: {"replica_identity": "full"}})
    watched = pipeline.watched()

    # Every pod's init container runs it, at once on a rollout.
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: prepare_database(watched, pipeline.settings), range(3)))
    published = pipeline.sql(
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
        (pipeline.id,),
    )
    # The table, and the heartbeat and signal tables the connector writes to.
    assert sorted(published) == sorted(
        (str(t.schema_), t.table) for t in publication_tables(watched)
    )
    assert ("public", items) in published
    assert pipeline.sql("SELECT relreplident FROM pg_class WHERE relname = %s", (items,)) == [
        ("f",)
    ]
    # Debezium's role may read it, and nothing more was needed.
    assert pipeline.sql(
        "SELECT has_table_privilege(%s, %s, 'SELECT')",
        (pipeline.settings.debezium_user, f"public.{items}"),
    ) == [(True,)]

    # Put into Connect as Strimzi's operator puts it.
    resource = kafka_connector(watched, pipeline.settings, "my-connect")
    jsonschema.validate(resource, strimzi_schemas()["KafkaConnector"])
    pipeline.put_as_strimzi(resource)
    pipeline.sql(f"INSERT INTO {items} VALUES (1, 'from strimzi')")
    with RecordReader(pipeline.stack.kafka_bootstrap, [pipeline.topic(items)]) as reader:
        records = reader.wait(lambda r: any(m.value() for m in r))
    body = json.loads(records[0].value())["payload"]
    assert (body["op"], body["after"]) == ("c", {"id": 1, "name": "from strimzi"})

    # Without a Connect URL (Strimzi's NetworkPolicy keeps its REST API to the operator) the
    # start-up check still checks the database and the handlers (none here: a warning).
    report = run_check([], watched, pipeline.settings.model_copy(update={"connect_url": ""}))
    assert report.errors == []
    assert [f.problem for f in report.warnings] == [
        f"captured (in {pipeline.file}) but no handler reacts to its changes"
    ]
    pipeline.sql(f"ALTER TABLE {items} REPLICA IDENTITY DEFAULT")
    report = run_check([], watched, pipeline.settings.model_copy(update={"connect_url": ""}))
    assert [f.subject for f in report.errors] == [f"public.{items}"]
