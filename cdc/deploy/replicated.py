"""The Kubernetes resources' replicated mode (``cdc deploy kubernetes --replicated``): Kafka
Connect and the connector's topics as the local cluster has them (``config.REPLICATED``),
and what that asks of a Kafka cluster that is not ours to configure."""

from __future__ import annotations

from cdc.stack import config
from cdc.tables.config import WatchedTables

TOPOLOGY = config.REPLICATED


def topic_replication(watched: WatchedTables) -> dict[str, str]:
    """The connector's topic creation: the file's factor, else the cluster's, and the
    in-sync copies that factor calls for. Said in the connector, not left to the brokers'
    defaults as the local cluster does, since those defaults are the operator's."""
    factor = watched.connector.topic_replication_factor
    replication = TOPOLOGY.replication if factor == -1 else config.Replication.for_brokers(factor)
    return {
        "topic.creation.default.replication.factor": str(replication.factor),
        "topic.creation.default.min.insync.replicas": str(replication.min_insync),
    }


def assumptions(kafka_bootstrap: str) -> str:
    """A YAML comment: what the resources are, and what the Kafka cluster must give them."""
    replication = TOPOLOGY.replication
    broker_config = config.replication_properties(replication)
    return _ASSUMPTIONS.format(
        brokers=TOPOLOGY.brokers,
        workers=TOPOLOGY.connect_workers,
        factor=replication.factor,
        min_insync=replication.min_insync,
        bootstrap=kafka_bootstrap,
    ) + "".join(f"#   {key}: {value}\n" for key, value in broker_config.items())


_ASSUMPTIONS = """\
# Replicated as the local cluster (`cdc stack up --brokers {brokers} --connect-workers {workers}`):
# Kafka Connect runs {workers} workers in one group, its topics and the connector's made with
# {factor} replicas (the connector's with min.insync.replicas={min_insync}). It assumes the Kafka
# cluster at {bootstrap} has {brokers} or more brokers and the local cluster's
# broker settings, for what is made without settings of its own (consumer offsets,
# transaction state, dead letters, Connect's topics' in-sync copies), as in the
# spec.kafka.config of a Strimzi Kafka:
"""
