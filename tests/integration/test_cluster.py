"""The local stack as a cluster: three KRaft nodes and two Connect workers in a private state
directory. The example application's topics get three replicas, two in sync; changes are
consumed; then a broker (the leader of the users topic) and the Connect worker running the
Debezium task are killed, and capture goes on: the task moves to the other worker and every
user written gets its one welcome."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from cdc.connect import ConnectClient
from cdc.replication_check import read_topics, replication_findings
from cdc.stack.local import LocalStack
from cdc.topics import ensure_topic
from tests.diagnose import pipeline_state
from tests.integration.conftest import Pipeline, private_cluster
from tests.integration.test_kill import ROOT, start, wait

pytestmark = pytest.mark.stack

WELCOMES = "SELECT count(*) FROM notifications WHERE kind = 'welcome' AND user_id = ANY(%s)"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalStack]:
    with private_cluster("cdc-cluster-test-") as stack:
        yield stack


def add_users(pipeline: Pipeline, first: int, count: int) -> list[int]:
    return [
        pipeline.sql(
            "INSERT INTO users (handle, email) VALUES (%s, %s) RETURNING id",
            (f"{pipeline.id}_{i}", f"{pipeline.id}_{i}@example.org"),
        )[0][0]
        for i in range(first, first + count)
    ]


def task_worker(connect: ConnectClient, name: str) -> str | None:
    """``host:port`` of the worker running the connector's task, once it runs."""
    tasks = connect.status(name)["tasks"]
    running = [t["worker_id"] for t in tasks if t["state"] == "RUNNING"]
    return running[0] if running else None


def test_a_cluster_replicates_and_captures_through_a_broker_and_a_worker_killed(
    cluster: LocalStack, tmp_path: Path
) -> None:
    endpoints = cluster.endpoints()
    assert len(endpoints.kafka_bootstrap.split(",")) == 3
    assert list(cluster.status()) == [
        "postgres",
        *("kafka-1", "kafka-2", "kafka-3"),
        *("connect-1", "connect-2"),
        "registry",
    ]
    pipeline = Pipeline(endpoints, tmp_path)
    consumer = None
    try:
        example = yaml.safe_load((ROOT / "cdc.yaml").read_text())
        outbox = {k: v for k, v in example["outbox"].items() if k != "topic_prefix"}
        pipeline.write_file(example["tables"], outbox=outbox, workloads=example.get("workloads"))
        pipeline.sql((ROOT / "handlers" / "schema.sql").read_text())
        pipeline.apply()
        ensure_topic(pipeline.settings, f"{pipeline.id}.dlq", 1 << 20)  # as the consumer would

        consumer = start(pipeline, tmp_path / "consumer.log")
        users = add_users(pipeline, 0, 20)
        assert wait(pipeline, WELCOMES, (users,), lambda n: n == 20, timeout=240) == 20

        # Every topic of ours: three replicas, two in sync, and `cdc check` content with that.
        watched = pipeline.watched()
        topics = read_topics(watched, pipeline.settings)
        names = {t.topic for t in topics.topics}
        assert {pipeline.topic("users"), f"{pipeline.id}.dlq"} <= names, names
        assert topics.brokers == 3
        assert replication_findings(topics) == []
        admin = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap})
        metadata = admin.list_topics(timeout=10)
        for name in names:
            assert {len(p.replicas) for p in metadata.topics[name].partitions.values()} == {3}
        resources = [ConfigResource(ResourceType.TOPIC, n) for n in sorted(names)]
        for resource, future in admin.describe_configs(resources).items():
            assert future.result()["min.insync.replicas"].value == "2", resource.name

        # Kill the users topic's leader and the worker running the task, at once.
        leader = metadata.topics[pipeline.topic("users")].partitions[0].leader
        connect = {w.url.removeprefix("http://"): w for w in cluster.connect_workers}
        running_on = task_worker(ConnectClient(endpoints.connect_url), pipeline.name)
        assert running_on in connect, (running_on, list(connect))
        survivor = next(w for addr, w in connect.items() if addr != running_on)
        killed_at = time.monotonic()
        cluster.stop(f"kafka-{leader}", crash=True)
        cluster.stop(connect[running_on].name, crash=True)

        more = add_users(pipeline, 20, 20)
        moved_to = None
        deadline = time.monotonic() + 300  # a loaded machine: Connect's rebalance is slow
        while moved_to != survivor.url.removeprefix("http://") and time.monotonic() < deadline:
            time.sleep(1)
            try:
                moved_to = task_worker(ConnectClient(survivor.url, timeout=5), pipeline.name)
            except Exception:  # the group is rebalancing
                moved_to = None
        assert moved_to == survivor.url.removeprefix("http://"), "the task did not move"
        welcomed = wait(pipeline, WELCOMES, (users + more,), lambda n: n >= 40, timeout=300)
        recovered_s = time.monotonic() - killed_at
        log = (tmp_path / "consumer.log").read_text()
        if welcomed != 40:
            groups = {pipeline.id: [pipeline.topic("users")]}
            state = pipeline_state(pipeline.settings, endpoints.connect_url, pipeline.name, groups)
            raise AssertionError(f"{welcomed} of 40 welcomed\n{state}\n{log[-5000:]}")
        assert pipeline.sql(
            "SELECT count(DISTINCT user_id) FROM notifications "
            "WHERE kind = 'welcome' AND user_id = ANY(%s)",
            (users + more,),
        ) == [(40,)]
        print(f"capture went on {recovered_s:.0f}s after the kills")

        # The broker comes back on its ports and data, and rejoins.
        cluster.restart(f"kafka-{leader}")
        assert cluster.status()[f"kafka-{leader}"]["ready"]
    finally:
        if consumer is not None:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(timeout=60)
        pipeline.db.close()
