"""What a test that timed out on the real stack prints: where the changes stopped.

A change that never reached its effect stopped at capture (the connector's task is not
running, or its topic's end did not move) or at consumption (the group's committed offsets
lag the topic's end). Said in one block, so a failure seen only in CI explains itself."""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import Consumer, TopicPartition

from cdc.connect import ConnectClient
from cdc.settings import Settings


def connector_state(connect_url: str, connector: str) -> str:
    try:
        status = ConnectClient(connect_url, timeout=5).status(connector)
    except Exception as exc:  # every worker down is an answer too
        return f"connector {connector}: no status ({exc})"
    lines = [f"connector {connector}: {status.get('connector', {}).get('state')}"]
    for task in status.get("tasks", []):
        trace = (task.get("trace") or "").strip().splitlines()[:3]
        lines.append(
            f"  task {task.get('id')} on {task.get('worker_id')}: {task.get('state')}"
            + "".join(f"\n    {t}" for t in trace)
        )
    return "\n".join(lines)


def group_state(settings: Settings, groups: Mapping[str, list[str]]) -> str:
    """Each group's committed offset against each partition's end."""
    lines = []
    for group, topics in groups.items():
        consumer = Consumer(settings.kafka_config(**{"group.id": group}))  # type: ignore[arg-type]
        try:
            for topic in topics:
                meta = consumer.list_topics(topic, timeout=10).topics[topic]
                parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
                committed = consumer.committed(parts, timeout=10)
                for tp in committed:
                    _, high = consumer.get_watermark_offsets(tp, timeout=10)
                    lines.append(
                        f"{group} {topic}[{tp.partition}]: committed {tp.offset}, end {high}"
                    )
        except Exception as exc:
            lines.append(f"{group}: no offsets ({exc})")
        finally:
            consumer.close()
    return "\n".join(lines)


def pipeline_state(
    settings: Settings, connect_url: str, connector: str, groups: Mapping[str, list[str]]
) -> str:
    return f"{connector_state(connect_url, connector)}\n{group_state(settings, groups)}"
