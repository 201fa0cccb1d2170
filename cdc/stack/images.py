"""The stack in containers: pinned images and how each image takes the configuration the
local processes use. Shared by docker compose (``cdc deploy compose``) and testcontainers."""

from __future__ import annotations

from collections.abc import Sequence

from cdc.stack import config
from cdc.stack.versions import POSTGRES_IMAGE_VERSION, versions

# Names on the containers' network, and the ports inside it.
KAFKA_HOST, KAFKA_PORT, KAFKA_CONTROLLER_PORT = "kafka", 9092, 9093
CONNECT_HOST, CONNECT_PORT = "connect", 8083
REGISTRY_HOST, REGISTRY_PORT = "registry", 8080
POSTGRES_HOST, POSTGRES_PORT = "postgres", 5432
KAFKA_DATA = "/var/lib/kafka/data"
# Where the Debezium image looks for extra Connect plugins.
CONNECT_PLUGINS = "/kafka/connect"
# What the local stack's worker loads that the image lacks (plugins/ of the JVM home): the
# pinned Apicurio converter (the image's own is 3.x) and our transforms (debezium/transforms).
ADDED_PLUGINS = ("apicurio-converter", "cdc-transforms")


def images() -> dict[str, str]:
    """Container images at the local stack's versions (``debezium/pom.xml``)."""
    v = versions()
    return {
        "postgres": f"postgres:{POSTGRES_IMAGE_VERSION}-bookworm",
        "kafka": f"apache/kafka:{v['kafka']}",
        "connect": f"quay.io/debezium/connect:{v['debezium']}",
        "registry": f"apicurio/apicurio-registry:{v['apicurio.registry']}",
    }


def postgres_command(settings: dict[str, str]) -> list[str]:
    return ["postgres", *(arg for k, v in settings.items() for arg in ("-c", f"{k}={v}"))]


def broker_properties(
    host_port: int,
    host_name: str,
    *,
    name: str = KAFKA_HOST,
    node_id: int = 1,
    controllers: Sequence[str] = (KAFKA_HOST,),
    replication: config.Replication | None = None,
) -> dict[str, str]:
    """Node ``name`` of the cluster whose controllers are ``controllers`` (nodes 1, 2, ...;
    by default the local stack's single broker), with one listener for the network and one
    for the host (the same port inside and out, so the advertised address works from both
    sides)."""
    is_controller = name in controllers
    props = config.broker_properties(
        port=KAFKA_PORT,
        controller_port=KAFKA_CONTROLLER_PORT if is_controller else None,
        host="0.0.0.0",  # noqa: S104 - inside the container
        advertised_host=name,
        log_dir=KAFKA_DATA,
        node_id=node_id,
        replication=replication or config.Replication(),
    )
    # The image formats its storage without --standalone, which a dynamic quorum
    # (controller.quorum.bootstrap.servers) needs: a static one formats as is.
    del props["controller.quorum.bootstrap.servers"]
    controller = f"CONTROLLER://0.0.0.0:{KAFKA_CONTROLLER_PORT}," if is_controller else ""
    return props | {
        "controller.quorum.voters": ",".join(
            f"{i}@{c}:{KAFKA_CONTROLLER_PORT}" for i, c in enumerate(controllers, 1)
        ),
        "listeners": f"INTERNAL://0.0.0.0:{KAFKA_PORT},{controller}HOST://0.0.0.0:{host_port}",
        "advertised.listeners": f"INTERNAL://{name}:{KAFKA_PORT},HOST://{host_name}:{host_port}",
        "inter.broker.listener.name": "INTERNAL",
        "listener.security.protocol.map": "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT,HOST:PLAINTEXT",
    }


def kafka_env(props: dict[str, str], cluster_id: str) -> dict[str, str]:
    """apache/kafka maps ``KAFKA_A_B`` to ``a.b``, ``__`` to ``_`` and ``___`` to ``-``."""
    env = {
        "KAFKA_" + k.replace("_", "__").replace("-", "___").replace(".", "_").upper(): v
        for k, v in props.items()
    }
    return env | {"CLUSTER_ID": cluster_id}


def worker_properties(
    *,
    name: str = CONNECT_HOST,
    bootstrap: str = f"{KAFKA_HOST}:{KAFKA_PORT}",
    topology: config.Topology | None = None,
) -> dict[str, str]:
    """A Connect worker of ``topology``, reachable as ``name`` on the network (by default
    the local stack's single worker)."""
    topology = topology or config.Topology()
    props = config.connect_worker_properties(
        bootstrap=bootstrap,
        rest_host="0.0.0.0",  # noqa: S104 - inside the container
        rest_port=CONNECT_PORT,
        plugin_path=None,
        replication_factor=topology.connect_replication_factor,
        rebalance_delay_ms=topology.rebalance_delay_ms,
        exactly_once=topology.exactly_once,
    )
    return props | {"rest.advertised.host.name": name}


def connect_env(props: dict[str, str]) -> dict[str, str]:
    """The Debezium image maps ``CONNECT_A_B`` to ``a.b``, except for the settings its
    entrypoint derives from variables of its own (and overwrites the ``CONNECT_*`` ones)."""
    own = {
        "key.converter": "KEY_CONVERTER",
        "value.converter": "VALUE_CONVERTER",
        "rest.advertised.port": "ADVERTISED_PORT",
        "bootstrap.servers": "BOOTSTRAP_SERVERS",
        "group.id": "GROUP_ID",
        "config.storage.topic": "CONFIG_STORAGE_TOPIC",
        "offset.storage.topic": "OFFSET_STORAGE_TOPIC",
        "status.storage.topic": "STATUS_STORAGE_TOPIC",
        "offset.flush.interval.ms": "OFFSET_FLUSH_INTERVAL_MS",
        "rest.advertised.host.name": "ADVERTISED_HOST_NAME",
    }
    env: dict[str, str] = {}
    for key, value in props.items():
        if "_" in key or "-" in key:
            raise ValueError(f"the Debezium image cannot take {key!r} from its environment")
        env[own.get(key, "CONNECT_" + key.replace(".", "_").upper())] = value
    return env
