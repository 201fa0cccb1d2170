"""``cdc deploy``: what runs the pipeline elsewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cdc.deploy import Target
from cdc.settings import Settings

if TYPE_CHECKING:
    pass

from cdc.cli.common import (
    WatchedOpt,
    _watched,
    app,
)

deploy_app = typer.Typer(
    no_args_is_help=True,
    help="Print what runs the pipeline elsewhere (from CDC_* settings in the environment).",
)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("compose")
def deploy_compose(
    tables: WatchedOpt = None,
    brokers: Annotated[
        int,
        typer.Option(help="Kafka nodes: 1, or a KRaft cluster of 3 or more (as `cdc stack up`)."),
    ] = 1,
    connect_workers: Annotated[
        int, typer.Option(help="Kafka Connect workers in one group (as `cdc stack up`).")
    ] = 1,
) -> None:
    """Print a docker-compose.yml with the local stack's components and pins, the setup and the
    consumer (a service per workload the watched-tables file declares). With --brokers 3
    --connect-workers 2 it is replicated as the local cluster (deploy/compose.cluster.yml)."""
    from cdc.deploy.compose import render_compose
    from cdc.stack.config import Topology

    settings, watched = _watched(tables, Settings())
    topology = Topology(brokers, connect_workers, watched.connector.exactly_once)
    if problem := topology.problem():
        raise typer.BadParameter(problem)
    print(render_compose(settings, watched.workloads, topology), end="")


@deploy_app.command("alerts")
def deploy_alerts() -> None:
    """Print Prometheus alerting rules for the consumer's metrics (deploy/prometheus/alerts.yml)."""
    from cdc.deploy.alerts import render_alerts

    print(render_alerts(), end="")


@deploy_app.command("kubernetes")
def deploy_kubernetes(
    tables: WatchedOpt = None,
    image: Annotated[str, typer.Option(help="The consumer image.")] = Target.image,
    name: Annotated[str, typer.Option(help="Name of the Deployment.")] = Target.name,
    namespace: Annotated[str | None, typer.Option(help="Namespace of every resource.")] = None,
    replicas: Annotated[
        int, typer.Option(min=1, help="Consumers of the default workload: its replicas.")
    ] = Target.replicas,
    kafka_bootstrap: Annotated[
        str, typer.Option(help="Kafka's bootstrap servers as the pods reach them.")
    ] = Target.kafka_bootstrap,
    connect_cluster: Annotated[
        str, typer.Option(help="Name of the Strimzi KafkaConnect.")
    ] = Target.connect_cluster,
    connect_image: Annotated[
        str, typer.Option(help="Where Strimzi pushes the Connect image it builds.")
    ] = Target.connect_image,
    pg_host: Annotated[str, typer.Option(help="PostgreSQL as the pods reach it.")] = (
        Target.pg_host
    ),
    registry_url: Annotated[
        str, typer.Option(help="The schema registry as Kafka Connect and the pods reach it.")
    ] = Target.registry_url,
    transforms_url: Annotated[
        str,
        typer.Option(
            help="Where Kafka Connect downloads cdc-transforms.jar (Avro only; built by "
            "`cdc stack fetch`, not published)."
        ),
    ] = Target.transforms_url,
    replicated: Annotated[
        bool,
        typer.Option(
            help="Kafka Connect and the connector's topics replicated as the local cluster "
            "(`cdc stack up --brokers 3 --connect-workers 2`), on a Kafka cluster of 3 or more "
            "brokers with its settings (said at the top of the output)."
        ),
    ] = False,
) -> None:
    """Print the consumer's ConfigMaps, Deployment, metrics Service and PodDisruptionBudget,
    and Strimzi's KafkaConnect and KafkaConnector, as one multi-document YAML."""
    from cdc.deploy.kubernetes import render_kubernetes

    settings, watched = _watched(tables, Settings())
    target = Target(
        image=image,
        name=name,
        namespace=namespace,
        replicas=replicas,
        kafka_bootstrap=kafka_bootstrap,
        connect_cluster=connect_cluster,
        connect_image=connect_image,
        pg_host=pg_host,
        registry_url=registry_url,
        transforms_url=transforms_url,
        replicated=replicated,
    )
    text = settings.watched_tables.read_text()
    print(render_kubernetes(text, watched, settings, target), end="")
