"""`cdc check` on our topics' replication: fewer copies than the cluster allows, or three
copies with a write acknowledged by one, is a warning with its fix."""

from __future__ import annotations

from cdc.findings import Severity
from cdc.replication_check import (
    ClusterTopics,
    TopicReplication,
    our_topics,
    replication_findings,
)
from cdc.settings import Settings
from cdc.tables.config import WatchedTables


def test_a_single_broker_asks_for_nothing_more_than_one_copy() -> None:
    cluster = ClusterTopics(1, (TopicReplication("cdc.public.users", 1, 1),))
    assert replication_findings(cluster) == []


def test_fewer_replicas_than_the_cluster_allows_is_a_warning() -> None:
    cluster = ClusterTopics(
        3,
        (
            TopicReplication("cdc.public.users", 1, 1),
            TopicReplication("cdc.dlq", 3, 2),
        ),
    )
    (finding,) = replication_findings(cluster)
    assert finding.severity is Severity.WARNING
    assert finding.subject == "topic cdc.public.users"
    assert "cluster of 3 brokers allows (3): cdc.public.users has 1" in finding.problem
    assert "default.replication.factor=3" in finding.fix


def test_two_brokers_allow_two_copies_and_one_in_sync() -> None:
    ok = ClusterTopics(2, (TopicReplication("cdc.public.users", 2, 1),))
    assert replication_findings(ok) == []
    (few,) = replication_findings(ClusterTopics(2, (TopicReplication("cdc.x", 1, 1),)))
    assert "allows (2)" in few.problem


def test_three_copies_with_one_in_sync_is_a_warning_for_each_such_topic() -> None:
    cluster = ClusterTopics(
        5,
        (
            TopicReplication("cdc.public.a", 3, 1),
            TopicReplication("cdc.public.b", 3, 1),
            TopicReplication("cdc.public.c", 3, 2),
        ),
    )
    (finding,) = replication_findings(cluster)
    assert finding.subject == "2 topics"
    assert "cdc.public.a has 1, cdc.public.b has 1" in finding.problem
    assert "min.insync.replicas=2" in finding.fix


def test_kafka_that_cannot_be_asked_is_said() -> None:
    (finding,) = replication_findings(ClusterTopics(0, error="timed out"))
    assert finding.subject == "kafka"
    assert "timed out" in finding.problem


def test_ours_are_the_prefixed_heartbeat_and_dead_letter_topics() -> None:
    watched = WatchedTables.model_validate(
        {"connector": {"topic_prefix": "app"}, "tables": {"public.users": {}}}
    )
    settings = Settings(dead_letter_topic="parked")
    names = ["app.public.users", "app.dlq", "__debezium-heartbeat.app", "parked", "other", "apps"]
    assert our_topics(watched, settings, names) == [
        "__debezium-heartbeat.app",
        "app.dlq",
        "app.public.users",
        "parked",
    ]
