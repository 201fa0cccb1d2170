"""`cdc deploy kubernetes --replicated`: valid against the schemas the default output passes,
and Kafka Connect, the connector's topics and the Kafka cluster's assumed settings as the
local cluster has them (`cdc stack up --brokers 3 --connect-workers 2`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cdc.deploy import Target, replicated
from cdc.deploy import kubernetes as k8s
from cdc.settings import Settings
from cdc.stack import config
from cdc.tables.config import load_watched_tables
from tests.deploy.conftest import ROOT
from tests.deploy.schemas import validate_strimzi
from tests.deploy.test_compose_cluster import run_cdc
from tests.deploy.test_kubernetes import KUBERNETES_VERSIONS, MANIFESTS, by_kind, documents


@pytest.fixture
def text(clean_settings: Settings) -> str:
    path = ROOT / "cdc.yaml"
    watched = load_watched_tables(path)
    return k8s.render_kubernetes(path.read_text(), watched, clean_settings, Target(replicated=True))


@pytest.fixture
def manifests(text: str) -> dict[str, list[dict[str, Any]]]:
    return by_kind(documents(text))


def test_the_cli_flag_prints_it(text: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CDC_STACK_DIR", str(tmp_path))  # not a running local stack's endpoints
    result = run_cdc("deploy", "kubernetes", "--replicated")
    assert result.returncode == 0, result.stderr
    assert result.stdout == text


def test_it_validates_as_the_default_output_does(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    validate_strimzi(manifests)
    custom = ("Kafka", "Prometheus", "ServiceMonitor")
    core = [d for kind, docs in manifests.items() for d in docs if not kind.startswith(custom)]
    for doc in core:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_only_connect_and_the_connector_differ_from_the_default(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    default = by_kind(documents(MANIFESTS.read_text()))
    assert manifests.keys() == default.keys()
    for kind in manifests.keys() - {"KafkaConnect", "KafkaConnector"}:
        assert manifests[kind] == default[kind], kind


def test_connect_is_the_local_clusters_group(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    cluster = config.REPLICATED
    (connect,) = manifests["KafkaConnect"]
    spec = connect["spec"]
    assert spec["replicas"] == cluster.connect_workers == 2
    factor = cluster.replication.factor
    assert factor == 3
    for topic in ("config", "offset", "status"):
        assert spec["config"][f"{topic}.storage.replication.factor"] == str(factor)
    assert spec["config"]["scheduled.rebalance.max.delay.ms"] == str(cluster.rebalance_delay_ms)
    assert spec["config"]["producer.acks"] == "all"
    assert spec["config"]["producer.enable.idempotence"] == "true"


def test_the_connectors_topics_are_replicated_as_the_local_clusters(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    replication = config.REPLICATED.replication
    (connector,) = manifests["KafkaConnector"]
    conf = connector["spec"]["config"]
    assert conf["topic.creation.default.replication.factor"] == str(replication.factor) == "3"
    assert conf["topic.creation.default.min.insync.replicas"] == str(replication.min_insync)
    assert replication.min_insync == 2


def test_a_factor_the_file_names_is_kept_with_its_in_sync_copies() -> None:
    watched = load_watched_tables(ROOT / "cdc.yaml")
    options = watched.connector.model_copy(update={"topic_replication_factor": 2})
    two = watched.model_copy(update={"connector": options})
    assert replicated.topic_replication(two) == {
        "topic.creation.default.replication.factor": "2",
        "topic.creation.default.min.insync.replicas": "1",  # 2 would refuse writes with one down
    }


def test_the_kafka_clusters_settings_are_said_as_the_local_cluster_sets_them(text: str) -> None:
    header = text.split("apiVersion:", 1)[0]
    assert f"{config.REPLICATED.brokers} or more brokers" in header
    assert Target().kafka_bootstrap in header
    listed = [line.removeprefix("#   ") for line in header.splitlines() if line.startswith("#   ")]
    said = yaml.safe_load("\n".join(listed))
    assert said == {
        k: int(v) for k, v in config.replication_properties(config.REPLICATED.replication).items()
    }
    # ... which are the local cluster's brokers' own.
    local = config.broker_properties(
        port=1, controller_port=2, log_dir="/d", replication=config.REPLICATED.replication
    )
    assert {k: str(v) for k, v in said.items()}.items() <= local.items()
