"""A revoked partition's commit on the real broker: what the consumer committed when it gave
the partition away stays committed (librdkafka commits a removed partition's stored offset
after the revoke callback; an older one would move the group back)."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cdc.runtime.consumer_config import consumer_config
from cdc.runtime.metrics import Metrics
from cdc.runtime.offsets import Offsets
from cdc.stack.endpoints import StackEndpoints
from cdc.tables.limits import RecordLimits
from tests.waiting import eventually

pytestmark = pytest.mark.stack


def test_a_revoked_partition_keeps_the_offset_committed_on_revoke(
    cdc_stack: StackEndpoints,
) -> None:
    name = f"revoke-{uuid.uuid4().hex[:8]}"
    settings = cdc_stack.settings(group_id=name, http_port=None)
    kafka = settings.kafka_config()
    admin = AdminClient(kafka)
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=30)
    producer = Producer(kafka)
    for i in range(50):
        producer.produce(name, str(i).encode())
    producer.flush(30)

    offsets = Offsets(Metrics(), deadline_s=5)
    consumer = Consumer(consumer_config(settings, RecordLimits()))
    consumer.subscribe(
        [name], on_assign=offsets.assigned, on_revoke=offsets.revoked, on_lost=offsets.lost
    )
    records: list[Message] = []
    try:
        eventually(
            lambda: records.extend(consumer.consume(50, 0.5)) or len(records),
            lambda n: n >= 20,
            what="the first records",
        )
        work = offsets.works[name, 0]
        for msg in records[:20]:
            work.add(msg.offset())
        for offset in range(5):
            work.finish(offset)
        offsets.store(consumer)  # stored 5, committed by the client within a second
        tp = TopicPartition(name, 0)
        eventually(lambda: consumer.committed([tp], timeout=10)[0].offset, lambda o: o == 5)
        for offset in range(5, 20):
            work.finish(offset)  # finished after the last store: the revoke commits them
        consumer.unsubscribe()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the client's own commit of removed partitions
            consumer.consume(1, 0.2)
    finally:
        consumer.close()

    reader = Consumer(settings.kafka_config(**{"group.id": name}))
    try:
        assert reader.committed([TopicPartition(name, 0)], timeout=10)[0].offset == 20
    finally:
        reader.close()
