"""A task run on a thread of its own every interval while the consumer runs (the capture
watcher, the ledger pruner). A failing run is logged and the next one comes as planned: a
bug or an outage there must not take the consumer down."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("cdc.consumer")


class Periodic:
    """``task`` every ``interval`` seconds between `start` and `stop` (never when the
    interval is 0); ``at_start``: once right away too."""

    def __init__(
        self, name: str, interval: float, task: Callable[[], object], *, at_start: bool
    ) -> None:
        self.name = name
        self.interval = interval
        self._task = task
        self._at_start = at_start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Whether it runs (an interval of 0 turns it off)."""
        if self.interval <= 0:
            return False
        self._thread = threading.Thread(target=self._loop, name=f"cdc-{self.name}", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        if self._at_start:
            self._run()
        while not self._stop.wait(self.interval):
            self._run()

    def _run(self) -> None:
        try:
            self._task()
        except Exception:
            log.exception("periodic.failed", task=self.name)
