"""The same stack with testcontainers, for machines with a Docker engine.

Thin on purpose: images come from the pinned versions, and the broker, worker and PostgreSQL
settings, bootstrap SQL and readiness probes are the ones the local processes use."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from cdc.errors import StackError
from cdc.stack import config, probes
from cdc.stack.endpoints import StackEndpoints
from cdc.stack.jvm import jvm_home
from cdc.stack.local import free_port, kafka_cluster_id
from cdc.stack.versions import images

log = structlog.get_logger("cdc.testing.containers")


def _env(prefix: str, props: dict[str, str]) -> dict[str, str]:
    # Both images map PREFIX_A_B to a.b (and __ to _).
    return {
        f"{prefix}{k.replace('_', '__').replace('.', '_').upper()}": v for k, v in props.items()
    }


@contextlib.contextmanager
def container_stack() -> Iterator[StackEndpoints]:
    """The stack in containers on a private network, removed on exit."""
    from testcontainers.core.network import Network

    started: list[Any] = []
    with Network() as network:
        try:
            yield _start(network, started)
        except BaseException:
            for container in started:
                with contextlib.suppress(Exception):
                    logs = b"".join(container.get_logs()).decode(errors="replace")
                    log.error("container.logs", image=container.image, logs=logs[-4000:])
            raise
        finally:
            for container in reversed(started):
                with contextlib.suppress(Exception):
                    container.stop()


def _start(network: Any, started: list[Any]) -> StackEndpoints:
    from testcontainers.core.container import DockerContainer

    img = images()
    su, app, dbz = (secrets.token_urlsafe(18) for _ in range(3))

    def start(name: str, container: Any) -> Any:
        container.with_network(network).with_network_aliases(name)
        started.append(container.start())
        return container

    pg_args = " ".join(f"-c {k}={v}" for k, v in config.PG_SETTINGS.items())
    pg = start(
        "postgres",
        DockerContainer(img["postgres"])
        .with_env("POSTGRES_PASSWORD", su)
        .with_exposed_ports(5432)
        .with_command(f"postgres {pg_args}"),
    )

    # One listener for the host (same port inside and out), one for the network.
    host_port = free_port()
    broker = config.broker_properties(
        port=9092,
        controller_port=9093,
        host="0.0.0.0",  # noqa: S104 - inside the container
        advertised_host="kafka",
        log_dir="/var/lib/kafka/data",
    )
    broker |= {
        "listeners": f"INTERNAL://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093,"
        f"HOST://0.0.0.0:{host_port}",
        "advertised.listeners": f"INTERNAL://kafka:9092,HOST://127.0.0.1:{host_port}",
        "inter.broker.listener.name": "INTERNAL",
        "controller.quorum.bootstrap.servers": "kafka:9093",
        "listener.security.protocol.map": (
            "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT,HOST:PLAINTEXT"
        ),
    }
    kafka = DockerContainer(img["kafka"]).with_bind_ports(host_port, host_port)
    for key, value in {**_env("KAFKA_", broker), "CLUSTER_ID": kafka_cluster_id()}.items():
        kafka.with_env(key, value)
    start("kafka", kafka)

    registry = start("registry", DockerContainer(img["registry"]).with_exposed_ports(8080))

    worker = config.connect_worker_properties(
        bootstrap="kafka:9092",
        rest_host="0.0.0.0",  # noqa: S104 - inside the container
        rest_port=8083,
        plugin_path=None,
    )
    worker["rest.advertised.host.name"] = "connect"
    # The image's own Apicurio converter is 3.x; mount the pinned one the local stack uses.
    converter = jvm_home() / "plugins" / "apicurio-converter"
    connect = (
        DockerContainer(img["connect"])
        .with_exposed_ports(8083)
        .with_volume_mapping(str(converter), "/kafka/connect/apicurio-converter", "ro")
    )
    for key, value in {
        **_env("CONNECT_", worker),
        # The image's entrypoint derives these from its own variables, not CONNECT_*.
        "BOOTSTRAP_SERVERS": worker["bootstrap.servers"],
        "GROUP_ID": worker["group.id"],
        "CONFIG_STORAGE_TOPIC": worker["config.storage.topic"],
        "OFFSET_STORAGE_TOPIC": worker["offset.storage.topic"],
        "STATUS_STORAGE_TOPIC": worker["status.storage.topic"],
        "OFFSET_FLUSH_INTERVAL_MS": worker["offset.flush.interval.ms"],
        "ADVERTISED_HOST_NAME": worker["rest.advertised.host.name"],
        "CDC_DEBEZIUM_PASSWORD": dbz,
    }.items():
        connect.with_env(key, value)
    start("connect", connect)

    def url(c: Any, port: int) -> str:
        return f"http://{c.get_container_host_ip()}:{c.get_exposed_port(port)}"

    pg_host, pg_port = pg.get_container_host_ip(), int(pg.get_exposed_port(5432))
    _wait("postgres", lambda: probes.postgres_ready(pg_host, pg_port, su))
    with probes.connect_superuser(pg_host, pg_port, su) as conn:
        config.bootstrap_postgres(conn, config.DatabaseRoles(app, dbz))
    bootstrap = f"127.0.0.1:{host_port}"
    _wait("kafka", lambda: probes.kafka_ready(bootstrap))
    _wait("registry", lambda: probes.registry_ready(url(registry, 8080)))
    _wait("connect", lambda: probes.connect_ready(url(connect, 8083)))
    return StackEndpoints(
        kafka_bootstrap=bootstrap,
        connect_url=url(connect, 8083),
        registry_url=url(registry, 8080),
        pg_host=pg_host,
        pg_port=pg_port,
        pg_superuser_password=su,
        app_database=config.APP_DATABASE,
        app_user=config.APP_USER,
        app_password=app,
        debezium_user=config.DEBEZIUM_USER,
        debezium_password=dbz,
        connect_pg_host="postgres",
        connect_pg_port=5432,
        connect_registry_url="http://registry:8080",
    )


def _wait(name: str, ready: Callable[[], bool], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(1)
    raise StackError(name, f"container not ready within {timeout:.0f}s")
