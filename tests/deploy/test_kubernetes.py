"""The Kubernetes manifests and the Strimzi resources: current, valid against their schemas,
and made of what the local stack runs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cdc.connect import render_config
from cdc.deploy import GRACE_MARGIN_S, Target
from cdc.deploy import kubernetes as k8s
from cdc.errors import ConfigError
from cdc.settings import Settings
from cdc.stack.jvm import jvm_home
from cdc.stack.versions import versions
from cdc.tables.config import Encoding, load_watched_tables
from cdc.tables.connector import DROP_NULLABLE_DEFAULTS
from tests.deploy.conftest import ROOT
from tests.deploy.schemas import strimzi_schemas, validate_strimzi
from tests.deploy.test_dockerfile import final_stage_uid

MANIFESTS = ROOT / "deploy" / "kubernetes.yaml"
# The oldest Kubernetes still supported upstream when this was written, and the newest the
# validator knows.
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


@pytest.fixture
def manifests() -> dict[str, list[dict[str, Any]]]:
    return by_kind(documents(MANIFESTS.read_text()))


def test_committed_manifests_are_what_the_code_makes(clean_settings: Settings) -> None:
    path = ROOT / "cdc.yaml"
    made = k8s.render_kubernetes(
        path.read_text(), load_watched_tables(path), clean_settings, Target()
    )
    assert MANIFESTS.read_text() == made, "run `make deploy-files`"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_manifests_validate_against_the_kubernetes_schemas(
    manifests: dict[str, list[dict[str, Any]]], version: str
) -> None:
    # Strimzi's and the Prometheus Operator's resources are custom: tested on their own.
    custom = ("Kafka", "Prometheus", "ServiceMonitor")
    core = [d for kind, docs in manifests.items() for d in docs if not kind.startswith(custom)]
    assert sorted(d["kind"] for d in core) == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "Deployment",  # the `bulk` workload's
        "PodDisruptionBudget",
        "PodDisruptionBudget",
        "Service",
    ]
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_wrong_field_fails_the_validation(manifests: dict[str, list[dict[str, Any]]]) -> None:
    # The validation is strict: a misspelt field is an error, not ignored.
    deployment = manifests["Deployment"][0]
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    connector = manifests["KafkaConnector"][0]
    connector["spec"]["taskMax"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(connector, strimzi_schemas()["KafkaConnector"])


def test_strimzi_resources_validate_against_strimzis_crds(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    assert {manifests[k][0]["apiVersion"] for k in ("KafkaConnect", "KafkaConnector")} == {
        k8s.STRIMZI_API
    }
    validate_strimzi(manifests)


def test_connector_render_strimzi_is_the_applied_config(
    clean_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CDC_STACK_DIR", str(tmp_path))  # not a running local stack's endpoints
    monkeypatch.setenv("CDC_CONNECT_PG_HOST", "pg.db.svc")
    # As an operator runs it: the command, in the project, from the environment.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cdc",
            "connector",
            "render",
            "--format",
            "strimzi",
            "--connect-cluster",
            "connect-a",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    (doc,) = documents(result.stdout)
    jsonschema.validate(doc, strimzi_schemas()["KafkaConnector"])
    assert doc["metadata"]["labels"] == {"strimzi.io/cluster": "connect-a"}
    # What Strimzi puts into Connect (class, tasks.max and config) is what apply puts.
    applied = render_config(load_watched_tables(ROOT / "cdc.yaml"), Settings())
    assert {
        "connector.class": doc["spec"]["class"],
        "tasks.max": str(doc["spec"]["tasksMax"]),
        **doc["spec"]["config"],
    } == applied
    assert applied["database.hostname"] == "pg.db.svc"
    assert applied["database.password"] == "${env:CDC_DEBEZIUM_PASSWORD}"


def test_kafka_connector_never_holds_the_password() -> None:
    inline = Settings(debezium_password="s3cret-pw", debezium_password_inline=True)
    watched = load_watched_tables(ROOT / "cdc.yaml")
    assert render_config(watched, inline)["database.password"] == "s3cret-pw"
    resource = k8s.kafka_connector(watched, inline, "my-connect")
    assert resource["spec"]["config"]["database.password"] == "${env:CDC_DEBEZIUM_PASSWORD}"
    assert "s3cret-pw" not in str(resource)


def test_kafka_connect_runs_the_local_stacks_connector_and_worker_settings(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    (connect,) = manifests["KafkaConnect"]
    (connector,) = manifests["KafkaConnector"]
    spec = connect["spec"]
    assert connector["metadata"]["labels"]["strimzi.io/cluster"] == connect["metadata"]["name"]
    assert connect["metadata"]["annotations"]["strimzi.io/use-connector-resources"] == "true"
    artifacts = [a for p in spec["build"]["plugins"] for a in p["artifacts"]]
    assert {"type": "maven", "group": "io.debezium", "artifact": "debezium-connector-postgres",
            "version": versions()["debezium"]} in artifacts  # fmt: skip
    # The password reference in the connector resolves from the env the worker is given,
    # which the worker's allowlist lets through.
    env = spec["template"]["connectContainer"]["env"]
    assert env == [
        {
            "name": "CDC_DEBEZIUM_PASSWORD",
            "valueFrom": {
                "secretKeyRef": {"name": k8s.DEBEZIUM_SECRET_NAME, "key": k8s.DEBEZIUM_PASSWORD_KEY}
            },
        }
    ]
    assert connector["spec"]["config"]["database.password"] == "${env:CDC_DEBEZIUM_PASSWORD}"
    assert spec["config"]["config.providers"] == "env"
    assert spec["config"]["config.providers.env.param.allowlist.pattern"] == (
        "^CDC_DEBEZIUM_PASSWORD$"
    )
    assert spec["config"]["offset.flush.interval.ms"] == "1000"


def test_avro_connect_gets_our_transforms_from_where_the_user_serves_them() -> None:
    watched = load_watched_tables(ROOT / "cdc.yaml")
    avro = watched.model_copy(
        update={"connector": watched.connector.model_copy(update={"encoding": Encoding.AVRO})}
    )
    # Not published anywhere Strimzi could fetch it from: no address, no resources.
    with pytest.raises(ConfigError, match="--transforms-url"):
        k8s.kafka_connect(avro, Target())
    url = "https://artifacts.example.com/cdc-transforms.jar"
    connect = k8s.kafka_connect(avro, Target(transforms_url=url))
    jsonschema.validate(connect, strimzi_schemas()["KafkaConnect"])
    plugins = {p["name"]: p["artifacts"] for p in connect["spec"]["build"]["plugins"]}
    assert plugins["cdc-transforms"] == [{"type": "jar", "url": url}]
    (converter,) = plugins["apicurio-converter"]
    assert converter["version"] == versions()["apicurio.converter"]
    # The jar to serve is the one the local stack's worker loads, with the class the
    # connector names, registered for Connect's service-loader discovery.
    config = k8s.kafka_connector(avro, Settings(), "my-connect")["spec"]["config"]
    assert config["transforms.nulls.type"] == DROP_NULLABLE_DEFAULTS
    jar = jvm_home(fetch=False) / "plugins" / "cdc-transforms" / "cdc-transforms.jar"
    with zipfile.ZipFile(jar) as zf:
        assert DROP_NULLABLE_DEFAULTS.replace(".", "/") + ".class" in zf.namelist()
        services = "META-INF/services/org.apache.kafka.connect.transforms.Transformation"
        assert zf.read(services).decode().split() == [DROP_NULLABLE_DEFAULTS]


def test_consumer_deployment(manifests: dict[str, list[dict[str, Any]]]) -> None:
    deployment, _ = manifests["Deployment"]
    tables_map, settings_map = manifests["ConfigMap"]
    pod = deployment["spec"]["template"]
    (consumer,) = pod["spec"]["containers"]
    (prepare,) = pod["spec"]["initContainers"]
    settings = settings_map["data"]

    # The watched-tables file is the project's, mounted where the settings say.
    assert tables_map["data"]["cdc.yaml"] == (ROOT / "cdc.yaml").read_text()
    mounts = {m["name"]: m["mountPath"] for m in consumer["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["watched-tables"]["configMap"]["name"] == tables_map["metadata"]["name"]
    assert settings["CDC_WATCHED_TABLES"] == f"{mounts['watched-tables']}/cdc.yaml"
    # Secrets come from the Secret, as files where pydantic-settings reads them.
    assert volumes["secrets"]["secret"]["secretName"] == k8s.SECRET_NAME
    assert settings["CDC_SECRETS_DIR"] == mounts["secrets"]
    assert not any("PASSWORD" in key for key in settings)

    # Every key of the settings map is a setting the consumer reads.
    fields = {f"CDC_{name.upper()}" for name in Settings.model_fields} | {"CDC_SECRETS_DIR"}
    assert set(settings) <= fields
    parsed = Settings.model_validate(
        {k.removeprefix("CDC_").lower(): v for k, v in settings.items()}
    )

    # Probes on the consumer's own endpoint.
    port = parsed.http_port
    assert consumer["ports"] == [{"name": "http", "containerPort": port}]
    assert consumer["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert consumer["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert consumer["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"

    # SIGTERM, then the shutdown deadline, then time to leave the group before SIGKILL.
    assert pod["spec"]["terminationGracePeriodSeconds"] > parsed.shutdown_deadline_s + 5
    assert consumer["args"] == ["run", "--workload", "default"]
    assert prepare["args"] == ["db", "prepare"]
    for container in (consumer, prepare):
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The pod runs as the image's user.
    assert pod["spec"]["securityContext"]["runAsUser"] == final_stage_uid()

    labels = pod["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert labels.items() >= selector.items()
    pdb, _ = manifests["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["maxUnavailable"] == 1
    (service,) = manifests["Service"]
    assert labels.items() >= service["spec"]["selector"].items()


def test_a_deployment_per_workload(manifests: dict[str, list[dict[str, Any]]]) -> None:
    """The file's `bulk` workload runs in a Deployment of its own, scaled apart; the metrics
    Service takes in every workload's pods, each Deployment only its own."""
    default, bulk = manifests["Deployment"]
    declared = load_watched_tables(ROOT / "cdc.yaml").workloads["bulk"]
    assert bulk["metadata"]["name"] == f"{default['metadata']['name']}-bulk"
    assert bulk["spec"]["replicas"] == declared.replicas
    (consumer,) = bulk["spec"]["template"]["spec"]["containers"]
    assert consumer["args"] == ["run", "--workload", "bulk"]
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in (default, bulk)]
    selectors = [d["spec"]["selector"]["matchLabels"] for d in (default, bulk)]
    for i, selector in enumerate(selectors):
        assert [p.items() >= selector.items() for p in pods] == [j == i for j in range(2)]
    (service,) = manifests["Service"]
    assert all(p.items() >= service["spec"]["selector"].items() for p in pods)
    pdbs = [d["spec"]["selector"]["matchLabels"] for d in manifests["PodDisruptionBudget"]]
    assert pdbs == selectors


def test_grace_period_follows_the_shutdown_deadline(tmp_path: Path) -> None:
    path = ROOT / "cdc.yaml"
    settings = Settings(shutdown_deadline_s=62.5, http_port=9500)
    docs = by_kind(
        documents(
            k8s.render_kubernetes(
                path.read_text(),
                load_watched_tables(path),
                settings,
                Target(namespace="shop", image="example/app:2"),
            )
        )
    )
    deployment = docs["Deployment"][0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 63 + GRACE_MARGIN_S
    assert pod["containers"][0]["ports"][0]["containerPort"] == 9500
    assert pod["containers"][0]["image"] == "example/app:2"
    assert {d["metadata"].get("namespace") for ds in docs.values() for d in ds} == {"shop"}
