"""The dead-letter topic: a record no handler could take, byte for byte, with headers that
say where it came from and why it is here.

A parked record is its original plus our headers (and the key once more, as a header), so it
is always larger than it was. A record near the source topic's limit (the broker's default is
about 1 MB, librdkafka's default producer limit 1,000,000 bytes) would then no longer fit, and
the consumer could neither park it nor move past it. So the producer takes records of up to
``MAX_RECORD_BYTES`` and the sink makes the dead-letter topic with (or raises it to) a
``max.message.bytes`` as large."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

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

from cdc.runtime.context import MAX_RECORD_BYTES, Outgoing, Resources
from cdc.settings import Settings

HEADER = "cdc.dlq."
_LIMIT = "max.message.bytes"

log = structlog.get_logger("cdc.dead_letter")


@dataclass(frozen=True)
class Rejected:
    """A record on its way to the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    reason: str
    error: str  # the error's type: DecodeError, DeadLetter, UnroutedTable, ...
    handler: str = ""
    table: str = ""
    attempts: int = 0
    timestamp_ms: int | None = None  # the original record's, restored on replay


class DeadLetterSink:
    """Parks records in ``topic``. ``send`` delivers or raises `KafkaException` (an outage, or
    a record over the topic's limit, with what to do about it): never skips a record."""

    def __init__(self, resources: Resources, topic: str) -> None:
        self.resources = resources
        self.topic = topic
        self._lock = threading.Lock()
        self._topic_ready = False

    def record(self, r: Rejected) -> Outgoing:
        context = {
            "topic": r.topic,
            "partition": str(r.partition),
            "offset": str(r.offset),
            "table": r.table,
            "handler": r.handler,
            "error": r.error,
            "reason": r.reason[:8000],
            "attempts": str(r.attempts),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if r.timestamp_ms is not None:
            context["timestamp"] = str(r.timestamp_ms)
        headers = [(HEADER + k, v.encode()) for k, v in context.items()]
        if r.key is not None:
            headers.append((HEADER + "key", r.key))
        # The original headers stay, after ours, so a replay can restore them.
        return Outgoing(self.topic, r.value, r.key, (*headers, *r.headers))

    def send(self, rejected: Rejected) -> None:
        """Deliver, or raise: the caller must not move past a record it could not park."""
        out = self.record(rejected)
        with self._lock:
            if not self._topic_ready:
                try:
                    ensure_topic(self.resources.settings, self.topic, MAX_RECORD_BYTES)
                except TimeoutError as exc:  # an admin request timed out: waited out
                    raise KafkaException(f"{self.topic}: no answer from the broker") from exc
                self._topic_ready = True
        try:
            self.resources.send([out])
        except KafkaException as exc:
            size = len(out.value or b"") + len(out.key or b"")
            size += sum(len(k) + len(v or b"") for k, v in out.headers)
            hint = (
                f"; raise the topic's {_LIMIT} above {size}"
                if "too large" in str(exc).lower()
                else ""
            )
            raise KafkaException(
                f"{self.topic}: a parked record of {size} bytes not delivered{hint}: {exc}"
            ) from exc


def ensure_topic(settings: Settings, topic: str, max_bytes: int, timeout: float = 30.0) -> None:
    """Create ``topic`` (broker default partitions and replication) taking records of up to
    ``max_bytes``, or raise an existing topic's lower limit to it. Not being allowed to is
    logged, not fatal: records under the limit it has still go through."""
    admin = AdminClient(settings.kafka_config())  # type: ignore[arg-type]
    wanted = {_LIMIT: str(max_bytes)}
    (created,) = admin.create_topics(
        [NewTopic(topic, config=wanted)], request_timeout=timeout
    ).values()
    try:
        created.result(timeout)
        log.info("dead_letter.topic_created", topic=topic, max_message_bytes=max_bytes)
        return
    except KafkaException as exc:
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
            if error is not None and _denied(error):
                log.warning("dead_letter.topic_not_created", topic=topic, error=str(error))
                return
            raise
    resource = ConfigResource(ResourceType.TOPIC, topic)
    (described,) = admin.describe_configs([resource], request_timeout=timeout).values()
    entry = described.result(timeout).get(_LIMIT)
    current = int(entry.value) if entry is not None and entry.value is not None else 0
    if current >= max_bytes:
        return
    change = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(_LIMIT, str(max_bytes), incremental_operation=AlterConfigOpType.SET)
        ],
    )
    (altered,) = admin.incremental_alter_configs([change], request_timeout=timeout).values()
    try:
        altered.result(timeout)
    except KafkaException as exc:
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is None or not _denied(error):
            raise
        log.warning(
            "dead_letter.limit_not_raised",
            topic=topic,
            max_message_bytes=current,
            wanted=max_bytes,
            error=str(error),
        )
        return
    log.info("dead_letter.limit_raised", topic=topic, was=current, max_message_bytes=max_bytes)


def _denied(error: KafkaError) -> bool:
    return error.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.POLICY_VIOLATION,
        KafkaError.INVALID_CONFIG,
    )
