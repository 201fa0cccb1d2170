"""Watching a group's committed offsets through a drill."""

from __future__ import annotations

import threading

from confluent_kafka import Consumer, TopicPartition

from tests.reliability.workload import ExampleApp


class OffsetWatch:
    """The group's committed offsets, read every half second: any that went backwards (a
    consumer committing over a newer owner's progress) is kept."""

    def __init__(self, app: ExampleApp, partitions: int) -> None:
        self.app = app
        self.partitions = partitions
        self.regressions: list[str] = []
        self.last: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="offset-watch", daemon=True)

    def __enter__(self) -> OffsetWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        settings = self.app.pipeline.settings
        group = Consumer(settings.kafka_config(**{"group.id": self.app.pipeline.id}))  # type: ignore[arg-type]
        parts = [TopicPartition(t, p) for t in self.app.topics for p in range(self.partitions)]
        try:
            while not self._stop.wait(0.5):
                try:
                    committed = group.committed(parts, timeout=5)
                except Exception:  # a broker is moving the group's coordinator: read again
                    committed = []
                for tp in committed:
                    key = (tp.topic, tp.partition)
                    if tp.offset < 0:
                        continue
                    if tp.offset < self.last.get(key, -1):
                        self.regressions.append(f"{key}: {self.last[key]} -> {tp.offset}")
                    self.last[key] = max(tp.offset, self.last.get(key, -1))
        finally:
            group.close()
