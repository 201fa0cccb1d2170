"""Kafka topics' ``max.message.bytes``: made or raised to what the record limits need."""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from cdc.settings import Settings

LIMIT = "max.message.bytes"

log = structlog.get_logger("cdc.topics")


def ensure_topic(
    settings: Settings,
    topic: str,
    max_bytes: int,
    timeout: float = 30.0,
    *,
    compacted: bool = False,
) -> None:
    """Create ``topic`` (broker default partitions and replication; ``compacted``: one
    partition, the latest record of each key kept) taking records of up to ``max_bytes``,
    or raise an existing topic's lower limit to it. Not being allowed to is logged, not
    fatal: records under the limit it has still go through."""
    admin = AdminClient(settings.kafka_config())  # type: ignore[arg-type]
    config = {LIMIT: str(max_bytes)}
    if compacted:
        config["cleanup.policy"] = "compact"
    new = NewTopic(topic, num_partitions=1 if compacted else -1, config=config)
    (created,) = admin.create_topics([new], request_timeout=timeout).values()
    try:
        created.result(timeout)
        log.info("topic.created", topic=topic, max_message_bytes=max_bytes)
        return
    except KafkaException as exc:
        error = _error(exc)
        if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
            if error is not None and _denied(error):
                log.warning("topic.not_created", topic=topic, error=str(error))
                return
            raise
    raise_limits(admin, [topic], max_bytes, timeout)


def raise_topic_limits(
    settings: Settings, prefixes: Iterable[str], max_bytes: int, timeout: float = 30.0
) -> list[str]:
    """Raise ``max.message.bytes`` to ``max_bytes`` on every existing topic whose name starts
    with one of ``prefixes`` (never lowering one); returns the topics raised."""
    admin = AdminClient(settings.kafka_config())  # type: ignore[arg-type]
    starts = tuple(prefixes)
    topics = sorted(t for t in admin.list_topics(timeout=timeout).topics if t.startswith(starts))
    return raise_limits(admin, topics, max_bytes, timeout)


def raise_limits(
    admin: AdminClient, topics: list[str], max_bytes: int, timeout: float
) -> list[str]:
    if not topics:
        return []
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
    current: dict[str, int] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        entry = future.result(timeout).get(LIMIT)
        current[resource.name] = int(entry.value) if entry and entry.value is not None else 0
    low = [t for t in topics if current[t] < max_bytes]
    if not low:
        return []
    changes = [
        ConfigResource(
            ResourceType.TOPIC,
            t,
            incremental_configs=[
                ConfigEntry(LIMIT, str(max_bytes), incremental_operation=AlterConfigOpType.SET)
            ],
        )
        for t in low
    ]
    raised = []
    for resource, future in admin.incremental_alter_configs(
        changes, request_timeout=timeout
    ).items():
        topic = resource.name
        try:
            future.result(timeout)
            raised.append(topic)
            log.info("topic.limit_raised", topic=topic, was=current[topic], now=max_bytes)
        except KafkaException as exc:
            error = _error(exc)
            if error is None or not _denied(error):
                raise
            # Records under the limit it has still go through; a larger one fails loudly.
            log.warning(
                "topic.limit_not_raised", topic=topic, was=current[topic], wanted=max_bytes,
                error=str(error),
            )  # fmt: skip
    return raised


def _error(exc: KafkaException) -> KafkaError | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


def _denied(error: KafkaError) -> bool:
    return error.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.POLICY_VIOLATION,
        KafkaError.INVALID_CONFIG,
    )
