"""What runs the consumer beside Debezium elsewhere: docker compose and Kubernetes (with
Strimzi managing Kafka Connect), made from the code and pins the local stack runs."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cdc.settings import Settings

# Beyond the shutdown deadline: time to close the consumer and leave the group cleanly.
GRACE_MARGIN_S = 15


@dataclass(frozen=True)
class Target:
    """Where the Kubernetes resources go and what they point at."""

    image: str = "registry.example.com/cdc-app:1.0.0"
    name: str = "cdc"
    namespace: str | None = None
    replicas: int = 2
    kafka_bootstrap: str = "my-cluster-kafka-bootstrap:9092"
    connect_cluster: str = "my-connect"
    connect_image: str = "registry.example.com/cdc-connect:1.0.0"
    pg_host: str = "postgres"
    registry_url: str = "http://apicurio-registry:8080"
    # Where Strimzi downloads our transforms' jar (Avro only): it is built from source
    # (debezium/transforms), not published, so the user serves it.
    transforms_url: str = ""
    # The Kafka cluster and Connect replicated as the local cluster (config.REPLICATED).
    replicated: bool = False


def served_port(settings: Settings) -> int:
    """The consumer's HTTP port in a container: probes and scrapes need a fixed one."""
    return settings.http_port or 9400


def grace_period_s(settings: Settings) -> int:
    """How long the platform waits after SIGTERM before SIGKILL."""
    return math.ceil(settings.shutdown_deadline_s) + GRACE_MARGIN_S


def consumer_env(settings: Settings) -> dict[str, str]:
    """The settings the rendered files derive ports and grace periods from, passed to the
    consumer so that what runs is what was rendered."""
    return {
        "CDC_SHUTDOWN_DEADLINE_S": f"{settings.shutdown_deadline_s:g}",
        "CDC_HTTP_PORT": str(served_port(settings)),
    }
