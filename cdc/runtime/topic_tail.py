"""A topic read from its beginning, and on as it grows, by every consumer: the dead-letter
topic (the keys held) and the control topic (what operators paused or skipped).

A consumer must know all of it before it runs a handler on a partition it was given: so each
assignment asks for the topic's end as of then (`want_end`), and the consumer loop waits
until the tail has read that far (`wait`); with an empty topic that is at once."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Self

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from cdc.settings import Settings
from cdc.tables.limits import RecordLimits

log = structlog.get_logger("cdc.consumer")

REPORT_S = 30.0  # a consumer waiting on the tail says so this often


class TopicTail:
    """Reads ``topic`` from its beginning on a thread of its own, each record to `_fold`."""

    kind = "topic"  # its log lines' prefix
    why = ""  # why the consumer waits for it
    relist_s = 10.0  # a topic not made yet (nothing written so far) is looked for this often

    def __init__(self, settings: Settings, topic: str, limits: RecordLimits) -> None:
        self.topic = topic
        self._config = settings.kafka_config(
            **{
                # Never commits: each process reads the whole topic.
                "group.id": f"cdc-tail-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                **limits.consumer(limits.parked),
            }
        )
        self._stop = threading.Event()
        self._asked = 0  # ends asked for (`want_end`), and the last one looked up
        self._looked_up = -1
        self._caught = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"cdc-{self.kind}-tail", daemon=True)
        self._ends: dict[int, int] = {}  # partition -> the end to reach
        self._at: dict[int, int] = {}  # partition -> the next offset to fold
        self.folded = 0

    def start(self) -> Self:
        self.want_end()
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def want_end(self) -> None:
        """From now until the tail has read up to the topic's end as of now, `caught_up` is
        False (an assignment calls it)."""
        with self._lock:
            self._asked += 1
            self._caught.clear()

    @property
    def caught_up(self) -> bool:
        return self._caught.is_set()

    def wait(self, stop: threading.Event) -> bool:
        """Until caught up (True) or ``stop`` is set (False); says so while it waits."""
        started = time.monotonic()
        reported = started
        while not self._caught.wait(0.2):
            if stop.is_set():
                return False
            if time.monotonic() - reported >= REPORT_S:
                reported = time.monotonic()
                log.warning(
                    f"{self.kind}.catching_up",
                    topic=self.topic,
                    waited_s=round(reported - started),
                    behind=self._behind(),
                    why=self.why,
                )
        return True

    def _behind(self) -> int:
        return sum(max(0, end - self._at.get(p, 0)) for p, end in self._ends.items())

    def _run(self) -> None:
        consumer = Consumer(self._config)
        listed = 0.0
        failing = False
        try:
            while not self._stop.is_set():
                try:
                    asked = self._asked
                    if asked != self._looked_up or (
                        not self._ends and time.monotonic() - listed > self.relist_s
                    ):
                        listed = time.monotonic()
                        self._reach(consumer)
                        self._looked_up = asked
                    # Caught up with the end looked up after the last ask, not an older one.
                    with self._lock:
                        if self._looked_up == self._asked and self._behind() == 0:
                            self._caught.set()
                    msg = consumer.poll(0.5 if self._caught.is_set() else 0.05)
                    if msg is not None:
                        self._take(msg)
                    if failing:
                        log.info(f"{self.kind}.tail_back", topic=self.topic)
                        failing = False
                except KafkaException as exc:
                    if not failing:
                        log.error(
                            f"{self.kind}.tail_failed",
                            topic=self.topic,
                            error=str(exc),
                        )
                    failing = True
                    self._looked_up = -1  # the end again, once the broker answers
                    self._stop.wait(1.0)
        finally:
            consumer.close()

    def _reach(self, consumer: Consumer) -> None:
        """The topic's end as of now, to be read up to; new partitions read from their start."""
        meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None:
            if meta is not None and meta.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaException(meta.error)
            self._ends = {}  # nothing was ever parked
            return
        new = [p for p in sorted(meta.partitions) if p not in self._at]
        ends = {}
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=10, cached=False
            )
            if p in new:
                self._at[p] = low
            ends[p] = high
        if new:
            consumer.incremental_assign([TopicPartition(self.topic, p, self._at[p]) for p in new])
        self._ends = ends

    def _take(self, msg: Message) -> None:
        err = msg.error()
        partition = int(msg.partition() or 0)
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                self._at[partition] = max(self._at.get(partition, 0), int(msg.offset() or 0))
                return
            raise KafkaException(err)
        offset = int(msg.offset() or 0)
        self._at[partition] = offset + 1
        self.folded += 1
        self._fold(msg)

    def _fold(self, msg: Message) -> None:
        raise NotImplementedError
