"""Consumer-group lag on the watched tables' topics (``cdc lag``)."""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from rich.table import Table

from cdc.settings import Settings
from cdc.tables.config import WatchedTables
from cdc.tables.connector import data_topic, outbox_topic_pattern


@dataclass(frozen=True)
class PartitionLag:
    """Where a consumer group stands on one partition of a watched table's topic.

    ``partition`` is None when the topic does not exist yet: Debezium creates it with the
    table's first event, so nothing is behind."""

    table: str
    topic: str
    partition: int | None
    committed: int | None  # None: the group never committed on this partition
    low: int  # low watermark: the first offset still in the log
    end: int  # high watermark: the offset the next record will get
    # Kafka timestamp (ms) of the first record the group has still to read: about when
    # Debezium produced it. None when nothing is behind.
    oldest_unread_ms: int | None = None

    @property
    def lag(self) -> int:
        return records_behind(self.committed, self.low, self.end)


def records_behind(committed: int | None, low: int, end: int) -> int:
    """Records the group has still to read. Without a usable committed offset (none, one
    retention has deleted, or one past the end of a re-created topic) the consumer starts
    where ``auto.offset.reset=earliest`` puts it: the low watermark."""
    start = committed if committed is not None and low <= committed <= end else low
    return end - start


def group_lag(
    settings: Settings, watched: WatchedTables, group: str, timeout: float = 10.0
) -> list[PartitionLag]:
    """The lag of ``group`` on every partition of the watched tables' data topics, in the
    file's table order, then of the outbox's topics. Reads committed offsets only: it
    neither joins the group nor commits."""
    consumer = Consumer(
        settings.kafka_config(
            **{
                "group.id": group,
                "enable.auto.commit": False,
                # An unreachable broker is reported once, as the error raised; not as
                # librdkafka's log line on every reconnect attempt.
                "log_level": 2,
            }
        )
    )
    try:
        # Every topic's metadata: asking for one topic by name may make the broker create it.
        existing = consumer.list_topics(timeout=timeout).topics
        topics = {str(t): data_topic(watched, t) for t in watched.table_names()}
        # The outbox's topics, one per aggregate type so far, by their own names.
        pattern = outbox_topic_pattern(watched)
        if pattern is not None:
            topics |= {t: t for t in sorted(existing) if re.match(pattern, t)}
        partitions = [
            TopicPartition(topic, p)
            for topic in topics.values()
            if topic in existing
            for p in sorted(existing[topic].partitions)
        ]
        committed = _committed(consumer, partitions, timeout) if partitions else {}
        rows: list[PartitionLag] = []
        for table, topic in topics.items():
            if topic not in existing:
                rows.append(PartitionLag(table, topic, None, None, 0, 0))
            for tp in (tp for tp in partitions if tp.topic == topic):
                low, end = _watermarks(consumer, tp, timeout)
                row = PartitionLag(
                    table, topic, tp.partition, committed[topic, tp.partition], low, end
                )
                if row.lag:
                    at = _timestamp_at(consumer, tp, end - row.lag, timeout)
                    row = dataclasses.replace(row, oldest_unread_ms=at)
                rows.append(row)
    finally:
        consumer.close()
    return rows


def workload_lag(
    settings: Settings, watched: WatchedTables, name: str, timeout: float = 10.0
) -> tuple[str, list[PartitionLag]]:
    """A workload's group and its lag: a workload other than `default` on the topics it
    has committed on (its handlers' tables), `default` on every watched table's."""
    from cdc.runtime.workloads import resolve
    from cdc.tables.workloads import DEFAULT_WORKLOAD

    group = resolve(name, settings, watched).settings.group_id
    rows = group_lag(settings, watched, group, timeout)
    if name != DEFAULT_WORKLOAD:
        read = {r.topic for r in rows if r.committed is not None}
        rows = [r for r in rows if r.topic in read]
    return group, rows


def _committed(
    consumer: Any, partitions: list[Any], timeout: float
) -> dict[tuple[str, int], int | None]:
    out: dict[tuple[str, int], int | None] = {}
    for tp in consumer.committed(partitions, timeout=timeout):
        if tp.error is not None:
            raise KafkaException(tp.error)
        # A negative offset is librdkafka's OFFSET_INVALID: nothing committed.
        out[tp.topic, tp.partition] = tp.offset if tp.offset >= 0 else None
    return out


def _timestamp_at(consumer: Any, tp: Any, offset: int, timeout: float) -> int | None:
    """The Kafka timestamp of the record at ``offset`` (None if it cannot be read in time)."""
    consumer.assign([TopicPartition(tp.topic, tp.partition, offset)])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            stamp = msg.timestamp()[1]
            return int(stamp) if stamp > 0 else None
        return None
    finally:
        consumer.unassign()


def _watermarks(consumer: Any, tp: Any, timeout: float) -> tuple[int, int]:
    marks = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
    if marks is None:  # librdkafka's way of saying it timed out
        raise KafkaException(
            KafkaError(KafkaError._TIMED_OUT, f"no watermarks for {tp.topic}[{tp.partition}]")
        )
    return int(marks[0]), int(marks[1])


def lag_table(
    rows: Iterable[PartitionLag], title: str | None = None, now_ms: float | None = None
) -> Table:
    """One row a partition and a total a table, then the total over all tables. ``behind``:
    how long ago the oldest record still to read was produced (its table's worst)."""
    now = time.time() * 1000 if now_ms is None else now_ms
    table = Table("table", "partition", "committed", "end", "lag", "behind", title=title)
    for column in table.columns[1:]:
        column.justify = "right"
    grand, worst_all = 0, None
    for name, group in itertools.groupby(rows, key=lambda r: r.table):
        parts = list(group)
        for row in parts:
            if row.partition is None:
                table.add_row(name, "no topic yet", "-", "-", "0", "-")
            else:
                committed = "-" if row.committed is None else str(row.committed)
                table.add_row(
                    name,
                    str(row.partition),
                    committed,
                    str(row.end),
                    str(row.lag),
                    behind(row.oldest_unread_ms, now),
                )
        total = sum(r.lag for r in parts)
        grand += total
        worst = min((r.oldest_unread_ms for r in parts if r.oldest_unread_ms), default=None)
        if worst is not None:
            worst_all = worst if worst_all is None else min(worst_all, worst)
        table.add_row(
            name, "total", "", "", str(total), behind(worst, now), style="bold", end_section=True
        )
    table.add_row("all tables", "total", "", "", str(grand), behind(worst_all, now), style="bold")
    return table


def behind(produced_ms: int | None, now_ms: float) -> str:
    if produced_ms is None:
        return "-"
    seconds = max(0, int((now_ms - produced_ms) / 1000))
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minute}m"
    return f"{minute}m {second}s" if minute else f"{second}s"
