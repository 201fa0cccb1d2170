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
from cdc.stack import config, images, probes
from cdc.stack.endpoints import StackEndpoints
from cdc.stack.jvm import jvm_home
from cdc.stack.local import free_port, kafka_cluster_id
from cdc.testing.stack import RunningStack

log = structlog.get_logger("cdc.testing.containers")


@contextlib.contextmanager
def container_stack() -> Iterator[RunningStack]:
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


def _start(network: Any, started: list[Any]) -> RunningStack:
    from testcontainers.core.container import DockerContainer

    img = images.images()
    su, app, dbz = (secrets.token_urlsafe(18) for _ in range(3))

    def start(name: str, container: Any) -> Any:
        container.with_network(network).with_network_aliases(name)
        started.append(container.start())
        return container

    def published(image: str, port: int) -> Any:
        # A fixed host port, so a restarted container answers where it did before.
        return DockerContainer(image).with_bind_ports(port, free_port())

    pg = start(
        images.POSTGRES_HOST,
        published(img["postgres"], images.POSTGRES_PORT)
        .with_env("POSTGRES_PASSWORD", su)
        .with_command(images.postgres_command(config.PG_SETTINGS)),
    )

    host_port = free_port()
    kafka = DockerContainer(img["kafka"]).with_bind_ports(host_port, host_port)
    broker = images.broker_properties(host_port, "127.0.0.1")
    for key, value in images.kafka_env(broker, kafka_cluster_id()).items():
        kafka.with_env(key, value)
    start(images.KAFKA_HOST, kafka)

    registry = start(
        images.REGISTRY_HOST,
        published(img["registry"], images.REGISTRY_PORT),
    )

    connect = published(img["connect"], images.CONNECT_PORT)
    for plugin in images.ADDED_PLUGINS:
        connect = connect.with_volume_mapping(
            str(jvm_home() / "plugins" / plugin), f"{images.CONNECT_PLUGINS}/{plugin}", "ro"
        )
    env = images.connect_env(images.worker_properties()) | {"CDC_DEBEZIUM_PASSWORD": dbz}
    for key, value in env.items():
        connect.with_env(key, value)
    start(images.CONNECT_HOST, connect)

    def url(c: Any, port: int) -> str:
        return f"http://{c.get_container_host_ip()}:{c.get_exposed_port(port)}"

    pg_host, pg_port = pg.get_container_host_ip(), int(pg.get_exposed_port(images.POSTGRES_PORT))
    bootstrap = f"127.0.0.1:{host_port}"
    ready: dict[str, tuple[Any, Callable[[], bool]]] = {
        "postgres": (pg, lambda: probes.postgres_ready(pg_host, pg_port, su)),
        "kafka": (kafka, lambda: probes.kafka_ready(bootstrap)),
        "registry": (registry, lambda: probes.registry_ready(url(registry, images.REGISTRY_PORT))),
        "connect": (connect, lambda: probes.connect_ready(url(connect, images.CONNECT_PORT))),
    }
    _wait("postgres", ready["postgres"][1])
    with probes.connect_superuser(pg_host, pg_port, su) as conn:
        config.bootstrap_postgres(conn, config.DatabaseRoles(app, dbz))
    for name in ("kafka", "registry", "connect"):
        _wait(name, ready[name][1])

    def restart(name: str, crash: bool, down_s: float) -> None:
        container, check = ready[name]
        wrapped = container.get_wrapped_container()
        if crash:
            wrapped.kill()
        else:
            wrapped.stop()
        time.sleep(down_s)
        wrapped.start()
        _wait(name, check)

    endpoints = StackEndpoints(
        kafka_bootstrap=bootstrap,
        connect_url=url(connect, images.CONNECT_PORT),
        registry_url=url(registry, images.REGISTRY_PORT),
        pg_host=pg_host,
        pg_port=pg_port,
        pg_superuser_password=su,
        app_database=config.APP_DATABASE,
        app_user=config.APP_USER,
        app_password=app,
        debezium_user=config.DEBEZIUM_USER,
        debezium_password=dbz,
        connect_pg_host=images.POSTGRES_HOST,
        connect_pg_port=images.POSTGRES_PORT,
        connect_registry_url=f"http://{images.REGISTRY_HOST}:{images.REGISTRY_PORT}",
    )
    return RunningStack(endpoints, restart)


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
