"""What `cdc check` says about our topics' replication: a topic with fewer copies than the
cluster could keep, or with three copies but a write acknowledged by one alone, loses
acknowledged changes with one broker. Ours: the connector's and the outbox's topics (with
the transaction and dead-letter topics under the same prefix), the heartbeat topic and a
dead-letter topic named apart."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ClusterMetadata,
    ConfigResource,
    ResourceType,
)

from cdc.findings import Finding, Severity
from cdc.settings import Settings
from cdc.stack.config import Replication
from cdc.tables.config import WatchedTables
from cdc.tables.connector import heartbeat_topic, topic_prefixes

MIN_INSYNC = "min.insync.replicas"
_quiet = logging.getLogger("cdc.check.librdkafka")  # the finding says it, once
_quiet.setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class TopicReplication:
    topic: str
    factor: int  # the fewest replicas of any of its partitions
    min_insync: int


@dataclass(frozen=True)
class ClusterTopics:
    """The brokers the cluster has and how each topic of ours is replicated; ``error``:
    Kafka could not be asked."""

    brokers: int
    topics: tuple[TopicReplication, ...] = ()
    error: str | None = None


def our_topics(watched: WatchedTables, settings: Settings, names: list[str]) -> list[str]:
    """Of ``names``, the topics ours."""
    exact = {heartbeat_topic(watched), settings.dead_letter_topic}
    starts = tuple(topic_prefixes(watched))
    return sorted(n for n in names if n in exact or n.startswith(starts))


def read_topics(watched: WatchedTables, settings: Settings, timeout: float = 10.0) -> ClusterTopics:
    """The broker count and our topics' replication; an unreachable Kafka is recorded."""
    try:
        admin, metadata = _metadata(settings, timeout)
        topics = our_topics(watched, settings, list(metadata.topics))
        resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
        configs = admin.describe_configs(resources, request_timeout=timeout) if topics else {}
        out = []
        for resource, future in configs.items():
            entry = future.result(timeout).get(MIN_INSYNC)
            partitions = metadata.topics[resource.name].partitions.values()
            out.append(
                TopicReplication(
                    resource.name,
                    min((len(p.replicas) for p in partitions), default=0),
                    int(entry.value) if entry is not None and entry.value is not None else 1,
                )
            )
        return ClusterTopics(len(metadata.brokers), tuple(sorted(out, key=lambda t: t.topic)))
    except Exception as exc:  # KafkaException, or a future's timeout
        reason = exc.args[0] if exc.args else None
        said = reason.str() if isinstance(reason, KafkaError) else str(exc)
        return ClusterTopics(0, error=said or repr(exc))


def _metadata(settings: Settings, timeout: float) -> tuple[AdminClient, ClusterMetadata]:
    """The cluster's metadata; where no broker answers at all, said at once rather than
    after the whole ``timeout`` (a `cdc check` without Kafka should not hang)."""
    down: list[KafkaError] = []

    def error(err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            down.append(err)

    conf = settings.kafka_config(error_cb=error, logger=_quiet)
    admin = AdminClient(conf)  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin, admin.list_topics(timeout=0.5)
        except KafkaException:
            admin.poll(0)  # serves the error callback
            if down or time.monotonic() > deadline:
                raise KafkaException(down[-1] if down else KafkaError._TIMED_OUT) from None


def replication_findings(cluster: ClusterTopics) -> list[Finding]:
    """A warning for our topics with fewer replicas than the cluster allows (three, or
    every broker of a smaller one), and one for those with three or more replicas that
    acknowledge a write held by fewer than two."""
    if cluster.error is not None:
        return [
            Finding(
                Severity.WARNING,
                "kafka",
                f"cannot be asked how our topics are replicated: {cluster.error}",
                "start Kafka or correct CDC_KAFKA_BOOTSTRAP and its security settings",
            )
        ]
    want = Replication.for_brokers(cluster.brokers)
    few = [t for t in cluster.topics if t.factor < want.factor]
    loose = [t for t in cluster.topics if t.factor >= 3 and t.min_insync < 2]
    findings = []
    if few:
        findings.append(
            Finding(
                Severity.WARNING,
                _subject(few),
                f"fewer replicas than the cluster of {cluster.brokers} brokers allows "
                f"({want.factor}): "
                + ", ".join(f"{t.topic} has {t.factor}" for t in few)
                + "; a broker lost loses what only it held",
                f"add replicas with kafka-reassign-partitions; for topics still to come, set "
                f"the brokers' default.replication.factor={want.factor} (or the connector's "
                "topic_replication_factor in the watched-tables file)",
            )
        )
    if loose:
        findings.append(
            Finding(
                Severity.WARNING,
                _subject(loose),
                f"{MIN_INSYNC} below 2 with 3 or more replicas: "
                + ", ".join(f"{t.topic} has {t.min_insync}" for t in loose)
                + "; an acks=all write is acknowledged while one broker alone holds it",
                f"kafka-configs --alter --entity-type topics --entity-name <topic> "
                f"--add-config {MIN_INSYNC}=2 (and the brokers' {MIN_INSYNC}=2 for topics "
                "still to come)",
            )
        )
    return findings


def _subject(topics: list[TopicReplication]) -> str:
    return f"topic {topics[0].topic}" if len(topics) == 1 else f"{len(topics)} topics"
