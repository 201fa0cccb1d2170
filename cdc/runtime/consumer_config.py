"""The librdkafka properties of the group's consumer."""

from __future__ import annotations

from cdc.settings import Settings
from cdc.tables.limits import RecordLimits


def consumer_config(settings: Settings, limits: RecordLimits) -> dict[str, object]:
    s = settings
    return s.kafka_config(
        **{
            "group.id": s.group_id,
            "session.timeout.ms": s.kafka_session_timeout_ms,
            "heartbeat.interval.ms": s.kafka_session_timeout_ms // 5,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
            "auto.commit.interval.ms": 1000,
            # A rebalance moves only the partitions that change owner; the others keep their
            # in-flight work.
            "partition.assignment.strategy": "cooperative-sticky",
            # Topics appear when Debezium first writes to them; notice them quickly.
            "topic.metadata.refresh.interval.ms": 5000,
            "statistics.interval.ms": 5000,
            # librdkafka's prefetch queue is the other half of bounded memory.
            "queued.max.messages.kbytes": 16384,
            # Once that queue is full, fetch again soon after it drains (the default waits a
            # second, leaving a fast consumer idle).
            "fetch.queue.backoff.ms": 50,
            # A record as large as a topic takes (librdkafka's defaults fit most already).
            **limits.consumer(limits.topic),
        }
    )
