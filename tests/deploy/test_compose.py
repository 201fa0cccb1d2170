"""docker-compose.yml: current, valid for a real compose implementation, and the same
components, versions, settings and connector config as the local stack."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc.connect import render_config
from cdc.deploy import compose
from cdc.settings import Settings, load_settings
from cdc.stack import config, images
from cdc.stack.jvm import jvm_home
from cdc.stack.local import PG_BIN
from cdc.stack.versions import POSTGRES_MAJOR, versions
from cdc.tables.config import load_watched_tables
from tests.deploy.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
# Listeners and addresses differ by design between the local stack and the containers.
BROKER_PLACEMENT = {
    "listeners",
    "advertised.listeners",
    "controller.quorum.bootstrap.servers",  # the local stack's dynamic quorum
    "controller.quorum.voters",  # the image's static one
    "inter.broker.listener.name",
    "listener.security.protocol.map",
    "log.dirs",
}


def env_properties(env: dict[str, str], prefix: str) -> dict[str, str]:
    """The properties an image makes of its ``<prefix>*`` variables (the inverse of
    :func:`cdc.stack.images.kafka_env`)."""
    out = {}
    for name, value in env.items():
        if name.startswith(prefix):
            # The image's own steps: _ to ., then ... to -, then .. to _.
            key = name.removeprefix(prefix).lower().replace("_", ".")
            out[key.replace("...", "-").replace("..", "_")] = value
    return out


def compose_command() -> list[str]:
    if exe := shutil.which("docker-compose"):
        return [exe]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if shutil.which("docker") and probe.returncode == 0:
        return ["docker", "compose"]
    pytest.fail("no compose implementation: `make test` installs Debian's docker-compose")


def compose_config(path: Path) -> dict[str, Any]:
    """A compose file as compose itself reads (and validates) it: ``docker-compose config``."""
    proc = subprocess.run(
        [*compose_command(), "-f", str(path), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = yaml.safe_load(proc.stdout.replace("$$", "$"))
    return doc


def assert_no_secret(text: str) -> None:
    for service in yaml.safe_load(text)["services"].values():
        for key in service.get("environment", {}):
            assert "PASSWORD" not in key or key.endswith("_FILE"), key
    assert "password:" not in text.lower()


@pytest.fixture(scope="module")
def normalized() -> dict[str, Any]:
    return compose_config(COMPOSE_FILE)


def test_committed_file_is_what_the_code_makes(clean_settings: Settings) -> None:
    workloads = load_watched_tables(ROOT / "cdc.yaml").workloads
    assert COMPOSE_FILE.read_text() == compose.render_compose(clean_settings, workloads), (
        "run `make deploy-files`"
    )


def test_compose_refuses_a_broken_file(tmp_path: Path) -> None:
    # The validation is real: a misplaced key fails it.
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["consumer"]["depends_on"]["setup"]["condition"] = "service_done"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    proc = subprocess.run(
        [*compose_command(), "-f", str(path), "config", "-q"], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "service_done" in proc.stderr


def test_images_are_the_local_stacks_versions(normalized: dict[str, Any]) -> None:
    services = normalized["services"]
    img = images.images()
    for name in ("postgres", "kafka", "registry"):
        assert services[name]["image"] == img[name]
    # Connect is the Debezium image with the pinned converter (deploy/connect.Dockerfile).
    connect = services["connect"]["build"]
    assert connect["dockerfile"] == "deploy/connect.Dockerfile"
    assert connect["args"]["CONNECT_IMAGE"] == img["connect"]
    v = versions()
    assert services["kafka"]["image"].endswith(f":{v['kafka']}")
    assert img["connect"].endswith(f":{v['debezium']}")
    assert services["registry"]["image"].endswith(f":{v['apicurio.registry']}")
    assert services["postgres"]["image"].startswith(f"postgres:{POSTGRES_MAJOR}.")
    # ... and those are what the local stack runs: the jars it fetched, its PostgreSQL.
    home = jvm_home(fetch=False)
    assert (home / "lib" / f"kafka-clients-{v['kafka']}.jar").exists()
    plugin = home / "plugins" / "debezium-connector-postgres"
    assert (plugin / f"debezium-connector-postgres-{v['debezium']}.jar").exists()
    assert (
        home / "apicurio-registry" / f"apicurio-registry-app-{v['apicurio.registry']}-runner.jar"
    ).exists()
    server = subprocess.run(
        [str(PG_BIN / "postgres"), "--version"], capture_output=True, text=True, check=True
    )
    assert server.stdout.split()[-1].split(".")[0] == POSTGRES_MAJOR


def test_services_start_in_order_with_health_checks(normalized: dict[str, Any]) -> None:
    services = normalized["services"]
    for name, service in services.items():
        for dep, cond in service.get("depends_on", {}).items():
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep] or dep == "consumer", (name, dep)
            elif cond["condition"] == "service_completed_successfully":
                assert services[dep]["restart"] == "no", (name, dep)
    deps = {name: set(s.get("depends_on", {})) for name, s in services.items()}
    assert deps["setup"] == {"postgres", "connect"}
    assert deps["consumer"] == {"setup"}
    assert deps["connect"] == {"secrets", "kafka", "registry"}
    assert deps["postgres"] == {"secrets"}
    # The consumer's health check is the image's (deploy/Dockerfile).
    assert services["consumer"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["consumer"]["command"] == ["run", "--workload", "default"]
    # A service per other workload the file declares, scaled apart.
    bulk = services["consumer-bulk"]
    assert bulk["command"] == ["run", "--workload", "bulk"]
    assert bulk["deploy"]["replicas"] == 1
    assert set(bulk["depends_on"]) == {"setup"}
    assert "ports" not in bulk
    # The port published and the stop grace period are the ones the consumer is given.
    env = services["consumer"]["environment"]
    (port,) = services["consumer"]["ports"]
    published = port["target"] if isinstance(port, dict) else port.split(":")[-1].split("/")[0]
    assert str(published) == env["CDC_HTTP_PORT"]
    grace = int(services["consumer"]["stop_grace_period"].removesuffix("s"))
    assert grace > float(env["CDC_SHUTDOWN_DEADLINE_S"]) + 5


def test_state_in_named_volumes_and_ports_on_loopback(normalized: dict[str, Any]) -> None:
    services = normalized["services"]
    assert set(normalized["volumes"]) == {"pgdata", "kafkadata", "secrets"}
    for service in services.values():
        for port in service.get("ports", []):
            host_ip = port["host_ip"] if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1"
    published = {n for n, s in services.items() if s.get("ports")}
    assert published == {"postgres", "kafka", "connect", "consumer", "prometheus"}


def test_no_secret_in_the_file() -> None:
    assert_no_secret(COMPOSE_FILE.read_text())


def test_broker_and_worker_configured_as_on_the_local_stack(normalized: dict[str, Any]) -> None:
    services = normalized["services"]
    # Every broker setting but placement is the same.
    local = config.broker_properties(port=9092, controller_port=9093, log_dir="/var/lib/kafka/data")
    broker = env_properties(services["kafka"]["environment"], "KAFKA_")
    assert {k: v for k, v in broker.items() if k not in BROKER_PLACEMENT} == {
        k: v for k, v in local.items() if k not in BROKER_PLACEMENT
    }

    worker = config.connect_worker_properties(
        bootstrap="x", rest_host="x", rest_port=1, plugin_path=None
    )
    env = services["connect"]["environment"]
    assert images.connect_env(images.worker_properties()) == env
    placement = {"bootstrap.servers", "listeners", "rest.advertised.host.name"}
    for key, value in worker.items():
        if key not in placement and key != "rest.advertised.port":
            assert value in env.values(), key

    settings = services["postgres"]["command"]
    assert [settings[i + 1] for i, a in enumerate(settings) if a == "-c"] == [
        f"{k}={v}" for k, v in config.PG_REPLICATION_SETTINGS.items()
    ]
    assert config.PG_REPLICATION_SETTINGS.items() <= config.PG_SETTINGS.items()


def test_setup_applies_the_local_stacks_connector_config(
    normalized: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = normalized["services"]["setup"]
    consumer = normalized["services"]["consumer"]
    assert setup["environment"] == consumer["environment"]
    assert setup["entrypoint"][-1] == (
        "cdc db init --schema handlers/schema.sql && cdc connector apply"
    )
    # The watched-tables file is the project's, mounted where the settings look.
    mounts = {}
    for volume in setup["volumes"]:  # short syntax, as compose prints it: source:target:mode
        source, target, *_ = (
            volume.split(":") if isinstance(volume, str) else (volume["source"], volume["target"])
        )
        mounts[Path(source)] = target
    assert mounts.get(ROOT / "cdc.yaml") == setup["environment"]["CDC_WATCHED_TABLES"]

    # Settings as the setup container reads them: its environment and the secrets volume.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in compose.SECRET_FILES:
        (secrets / name).write_text(f"{name}-value")
    for key in [k for k in os.environ if k.startswith("CDC_")]:
        monkeypatch.delenv(key)
    for key, value in setup["environment"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CDC_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("CDC_STACK_DIR", str(tmp_path / "no-stack"))
    monkeypatch.chdir(tmp_path)
    in_compose = load_settings()
    assert in_compose.pg_password.get_secret_value() == "cdc_pg_password-value"
    assert in_compose.pg_superuser_password is not None

    watched = load_watched_tables(ROOT / "cdc.yaml")
    ours = render_config(watched, in_compose)
    local = render_config(
        watched, Settings(pg_host="127.0.0.1", pg_port=45432, registry_url="http://127.0.0.1:1")
    )
    endpoints = {"database.hostname", "database.port"}
    assert {k: v for k, v in ours.items() if k not in endpoints} == {
        k: v for k, v in local.items() if k not in endpoints
    }
    assert ours["database.hostname"] == images.POSTGRES_HOST
    assert ours["database.port"] == str(images.POSTGRES_PORT)
    # The password stays a reference the worker resolves from the file in the volume.
    assert ours["database.password"] == "${env:CDC_DEBEZIUM_PASSWORD}"
    entry = " ".join(normalized["services"]["connect"]["entrypoint"])
    assert f"CDC_DEBEZIUM_PASSWORD=$(cat {compose.SECRETS_DIR}/cdc_debezium_password)" in entry


def test_image_variable_names_round_trip() -> None:
    # apache/kafka: _ is ., __ is _, ___ is -.
    props = {"a-b.c_d": "1", "log.dirs": "/data"}
    env = images.kafka_env(props, "cluster")
    assert env == {"KAFKA_A___B_C__D": "1", "KAFKA_LOG_DIRS": "/data", "CLUSTER_ID": "cluster"}
    assert env_properties(env, "KAFKA_") == props
    # The Debezium image has no escapes: a key it cannot take is refused, not mangled.
    with pytest.raises(ValueError, match="cannot take"):
        images.connect_env({"a_b": "1"})


def test_the_local_stacks_secure_listeners_change_only_security_keys() -> None:
    """The local stack's broker adds TLS and SASL/SCRAM listeners (docker compose has none: its
    consumer reaches Kafka on the container network), so the comparison above holds for it
    too: everything outside ``SECURITY_KEYS`` is the same with or without them."""
    args: dict[str, Any] = {"port": 9092, "controller_port": 9093, "log_dir": "/d"}
    plain = config.broker_properties(**args)
    security = config.BrokerSecurity(
        ssl_port=9094, sasl_port=9095, key="KEY", certificate_chain="CHAIN"
    )
    secure = config.broker_properties(**args, security=security)
    changed = {k for k in plain.keys() | secure.keys() if plain.get(k) != secure.get(k)}
    assert changed == config.SECURITY_KEYS
    assert secure["listener.security.protocol.map"].endswith(",SSL:SSL,SASL_SSL:SASL_SSL")
    assert "KEY" not in repr(security)
