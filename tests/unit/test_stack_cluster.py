"""The local stack as a cluster, as configured: KRaft nodes and their quorum, the replication
the cluster gives every topic, Connect's workers, and the topology the state remembers."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.errors import StackError
from cdc.stack import config
from cdc.stack.local import LocalStack, StackState
from cdc.stack.local.processes import Processes


@pytest.mark.parametrize(
    ("brokers", "factor", "min_insync"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)]
)
def test_replication_is_three_copies_two_in_sync_where_the_cluster_allows(
    brokers: int, factor: int, min_insync: int
) -> None:
    assert config.Replication.for_brokers(brokers) == config.Replication(factor, min_insync)


def test_a_single_node_is_its_own_quorum_with_one_copy_of_everything() -> None:
    props = config.broker_properties(port=9092, controller_port=9093, log_dir="/d")
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["min.insync.replicas"] == "1"
    assert "default.replication.factor" not in props  # Kafka's own default, 1


def test_a_cluster_node_knows_the_whole_quorum_and_replicates_three_ways() -> None:
    quorum = config.Quorum({1: "127.0.0.1:1001", 2: "127.0.0.1:1002", 3: "127.0.0.1:1003"})
    props = config.broker_properties(
        port=9092,
        controller_port=1002,
        log_dir="/d",
        node_id=2,
        quorum=quorum,
        replication=config.Replication.for_brokers(3),
    )
    assert props["node.id"] == "2"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == (
        "127.0.0.1:1001,127.0.0.1:1002,127.0.0.1:1003"
    )
    assert "CONTROLLER://127.0.0.1:1002" in props["listeners"]
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "3", key
    for key in (
        "min.insync.replicas",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "2", key

    broker_only = config.broker_properties(
        port=9094, controller_port=None, log_dir="/d", node_id=4, quorum=quorum
    )
    assert broker_only["process.roles"] == "broker"
    assert "CONTROLLER://" not in broker_only["listeners"]


def test_connect_workers_write_with_acks_all_and_idempotence() -> None:
    worker = config.connect_worker_properties(
        bootstrap="b:1,b:2", rest_host="h", rest_port=1, plugin_path=None, replication_factor=-1
    )
    assert worker["producer.acks"] == "all"
    assert worker["producer.enable.idempotence"] == "true"
    for topic in ("config", "offset", "status"):
        assert worker[f"{topic}.storage.replication.factor"] == "-1"  # the cluster's default


def test_every_node_of_a_cluster_is_formatted_with_the_same_controllers(tmp_path: Path) -> None:
    StackState(brokers=4, connect_workers=2).save(tmp_path / "state.json")
    stack = LocalStack(tmp_path)
    assert list(stack.components()) == [
        "postgres",
        *("kafka-1", "kafka-2", "kafka-3", "kafka-4"),
        *("connect-1", "connect-2"),
        "registry",
    ]
    nodes = stack.kafka_nodes
    props = [n._cluster_properties() for n in nodes]
    formats = {tuple(n._quorum_format()) for n in nodes}
    assert len(formats) == 1
    (flag, voters), *_ = formats
    assert flag == "--initial-controllers"
    ports = stack.state.ports
    assert [v.rsplit(":", 1)[0] for v in voters.split(",")] == [
        f"{i}@127.0.0.1:{ports[f'kafka-{i}-controller']}" for i in (1, 2, 3)
    ]
    assert [p["controller_port"] is None for p in props] == [False, False, False, True]
    assert all(p["quorum"] == props[0]["quorum"] for p in props)
    assert all(p["replication"] == config.Replication(3, 2) for p in props)
    # The quorum's ports stay as reserved (even while another process holds them).
    stack.procs.save()
    kept = Processes(tmp_path)
    assert kept.reserve("kafka-1-controller") == ports["kafka-1-controller"]
    assert LocalStack(tmp_path).kafka_nodes[0]._cluster_properties()["quorum"] == props[0]["quorum"]


def test_the_topology_is_fixed_once_kafka_is_formatted(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path)
    assert list(stack.components()) == ["postgres", "kafka", "connect", "registry"]
    with pytest.raises(StackError, match="brokers must be 1, or 3 or more"):
        stack._set_topology(2, 1)
    stack._set_topology(3, 2)
    assert [n.name for n in stack.connect_workers] == ["connect-1", "connect-2"]
    stack.state.cluster_id = "formatted"
    stack._set_topology(None, None)  # as it was made
    stack._set_topology(3, 3)  # workers may change while none runs
    with pytest.raises(StackError, match="holds a stack of 3 broker"):
        stack._set_topology(1, 1)


def test_exactly_once_source_support_is_the_workers_and_the_connectors_asks_for_it(
    tmp_path: Path,
) -> None:
    from cdc.tables.config import parse_watched_tables
    from cdc.tables.connector import connector_config
    from tests.unit.test_watched_tables import DB

    stack = LocalStack(tmp_path)
    assert "exactly.once.source.support" not in stack.connect_workers[0].properties()
    stack._set_topology(None, None, exactly_once=True)
    assert stack.state.exactly_once
    assert stack.connect_workers[0].properties()["exactly.once.source.support"] == "enabled"
    base = "connector: {topic_prefix: app}\ntables: {public.t: {}}"
    assert "exactly.once.support" not in connector_config(parse_watched_tables(base), DB)
    eos = "connector: {topic_prefix: app, exactly_once: true}\ntables: {public.t: {}}"
    config = connector_config(parse_watched_tables(eos), DB)
    assert config["exactly.once.support"] == "required"
    assert config["transaction.boundary"] == "poll"


def test_the_deploy_outputs_enable_it_as_the_file_asks() -> None:
    from cdc.deploy.kubernetes import Target, kafka_connect
    from cdc.stack import images
    from cdc.tables.config import parse_watched_tables

    compose = images.worker_properties(topology=config.Topology(exactly_once=True))
    assert compose["exactly.once.source.support"] == "enabled"
    eos = "connector: {topic_prefix: app, exactly_once: true}\ntables: {public.t: {}}"
    strimzi = kafka_connect(parse_watched_tables(eos), Target())
    assert strimzi["spec"]["config"]["exactly.once.source.support"] == "enabled"
