"""deploy/compose.cluster.yml: current, valid for a real compose implementation, and the local
cluster's brokers, quorum, replication and Connect group (`cdc stack up --brokers 3
--connect-workers 2`) in containers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cdc.deploy import compose
from cdc.settings import Settings
from cdc.stack import config, images
from cdc.stack.local import LocalStack, StackState
from cdc.tables.config import load_watched_tables
from tests.deploy import test_compose
from tests.deploy.conftest import ROOT
from tests.deploy.test_compose import assert_no_secret, compose_config, env_properties

CLUSTER_FILE = ROOT / compose.CLUSTER_FILE
# Where each runs and how it is reached, which differ by design between processes on one
# host and containers; every other setting is compared. The local nodes have TLS listeners.
BROKER_PLACEMENT = test_compose.BROKER_PLACEMENT | config.SECURITY_KEYS
WORKER_PLACEMENT = {
    "bootstrap.servers",
    "listeners",
    "rest.advertised.host.name",
    "rest.advertised.port",
    "plugin.path",
}


def run_cdc(*args: str) -> subprocess.CompletedProcess[str]:
    """``cdc`` as an operator runs it: a process of its own, in the project."""
    return subprocess.run(
        [sys.executable, "-m", "cdc", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def normalized() -> dict[str, Any]:
    return compose_config(CLUSTER_FILE)


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> LocalStack:
    """The local stack as `cdc stack up --brokers 3 --connect-workers 2` lays it out (not
    started)."""
    state_dir = tmp_path_factory.mktemp("cluster")
    StackState(brokers=3, connect_workers=2).save(state_dir / "state.json")
    return LocalStack(state_dir)


def test_committed_file_is_what_the_code_makes(clean_settings: Settings) -> None:
    workloads = load_watched_tables(ROOT / "cdc.yaml").workloads
    made = compose.render_compose(clean_settings, workloads, compose.CLUSTER)
    assert CLUSTER_FILE.read_text() == made, "run `make deploy-files`"
    # ... with the topology `make deploy-files` asks for.
    flags = (
        f"--brokers {compose.CLUSTER.brokers} --connect-workers {compose.CLUSTER.connect_workers}"
    )
    assert f"deploy compose {flags} > {compose.CLUSTER_FILE}" in (ROOT / "Makefile").read_text()
    assert f"docker compose -f {compose.CLUSTER_FILE} up" in made.split("\n\n", 1)[0]


def test_the_cli_takes_stack_ups_flags_and_refuses_what_it_refuses(
    clean_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CDC_STACK_DIR", str(tmp_path))  # not a running local stack's endpoints
    flags = ["--brokers", "3", "--connect-workers", "2"]
    made = run_cdc("deploy", "compose", *flags)
    assert made.returncode == 0, made.stderr
    assert made.stdout == CLUSTER_FILE.read_text()
    refused = run_cdc("deploy", "compose", "--brokers", "2")
    assert refused.returncode == 2
    assert "brokers must be 1" in refused.stderr


def test_three_kraft_nodes_of_one_cluster_with_a_volume_each(normalized: dict[str, Any]) -> None:
    services = normalized["services"]
    names = ["kafka-1", "kafka-2", "kafka-3"]
    assert [n for n in services if n.startswith("kafka")] == names
    envs = [services[n]["environment"] for n in names]
    props = [env_properties(e, "KAFKA_") for e in envs]
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert {p["process.roles"] for p in props} == {"broker,controller"}
    voters = "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
    assert {p["controller.quorum.voters"] for p in props} == {voters}
    assert {e["CLUSTER_ID"] for e in envs} == {compose.KAFKA_CLUSTER_ID}
    assert [p["advertised.listeners"].split(",")[0] for p in props] == [
        f"INTERNAL://{n}:9092" for n in names
    ]
    volumes = [services[n]["volumes"][0] for n in names]
    sources = [v["source"] if isinstance(v, dict) else v.split(":")[0] for v in volumes]
    assert len(set(sources)) == 3
    assert set(normalized["volumes"]) == {"pgdata", "secrets", *sources}
    host_ports = [str(services[n]["ports"][0]) for n in names]
    assert len(set(host_ports)) == 3


def test_brokers_replicate_as_the_local_cluster(
    normalized: dict[str, Any], local_cluster: LocalStack
) -> None:
    replication = compose.CLUSTER.replication
    assert (replication.factor, replication.min_insync) == (3, 2)
    shared = config.replication_properties(replication)
    for node in local_cluster.kafka_nodes:
        local = config.broker_properties(port=1, log_dir="/d", **node._cluster_properties())
        ours = env_properties(normalized["services"][node.name]["environment"], "KAFKA_")
        assert shared.items() <= ours.items()
        assert {k: v for k, v in ours.items() if k not in BROKER_PLACEMENT} == {
            k: v for k, v in local.items() if k not in BROKER_PLACEMENT
        }


def test_two_connect_workers_in_one_group_as_the_local_clusters(
    normalized: dict[str, Any], local_cluster: LocalStack
) -> None:
    services = normalized["services"]
    names = ["connect-1", "connect-2"]
    assert [n for n in services if n.startswith("connect")] == names
    bootstrap = "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    for name, local in zip(names, local_cluster.connect_workers, strict=True):
        env = services[name]["environment"]
        assert env == images.connect_env(
            images.worker_properties(name=name, bootstrap=bootstrap, topology=compose.CLUSTER)
        )
        assert env["GROUP_ID"] == "cdc-connect"
        assert env["BOOTSTRAP_SERVERS"] == bootstrap
        assert env["ADVERTISED_HOST_NAME"] == name
        # The storage topics take the brokers' default.replication.factor (3), as locally.
        factor = str(compose.CLUSTER.connect_replication_factor)
        assert factor == str(local.replication_factor) == "-1"
        for topic in ("CONFIG", "OFFSET", "STATUS"):
            assert env[f"CONNECT_{topic}_STORAGE_REPLICATION_FACTOR"] == factor
        assert env["CONNECT_PRODUCER_ACKS"] == "all"
        assert env["CONNECT_PRODUCER_ENABLE_IDEMPOTENCE"] == "true"
        # Every setting but placement is the local cluster's worker's.
        mine = config.connect_worker_properties(
            bootstrap="x",
            rest_host="x",
            rest_port=1,
            plugin_path=None,
            replication_factor=local.replication_factor,
            rebalance_delay_ms=local.rebalance_delay_ms,
        )
        expected = images.connect_env({k: v for k, v in mine.items() if k not in WORKER_PLACEMENT})
        assert expected.items() <= env.items()
        assert set(services[name]["depends_on"]) == {
            "secrets",
            "registry",
            "kafka-1",
            "kafka-2",
            "kafka-3",
        }
    ports = [str(services[n]["ports"][0]) for n in names]
    assert len(set(ports)) == 2


def test_the_consumer_and_setup_know_every_broker_and_worker(normalized: dict[str, Any]) -> None:
    services = normalized["services"]
    for name in ("setup", "consumer", "demo", "consumer-bulk"):
        env = services[name]["environment"]
        assert env["CDC_KAFKA_BOOTSTRAP"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
        assert env["CDC_CONNECT_URL"] == "http://connect-1:8083,http://connect-2:8083"
    assert set(services["setup"]["depends_on"]) == {"postgres", "connect-1", "connect-2"}
    # The paths are the project root's, though the file is in deploy/.
    assert Path(services["consumer"]["build"]["context"]) == ROOT
    assert Path(services["connect-1"]["build"]["context"]) == ROOT
    mounts = [
        v.split(":")[0] if isinstance(v, str) else v["source"] for v in services["setup"]["volumes"]
    ]
    assert str(ROOT / "cdc.yaml") in mounts


def test_no_secret_in_the_file() -> None:
    assert_no_secret(CLUSTER_FILE.read_text())
