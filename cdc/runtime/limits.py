"""Limits on handler runs: a time limit on a sync handler's attempt (the call runs on a
thread of its own, which the waiting worker can give up on), and a workload's rate."""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("cdc.consumer")


class HandlerTimeout(Exception):
    """An attempt ran past its time limit: it failed, and may be retried."""

    def __init__(self, handler: str, seconds: float) -> None:
        super().__init__(f"{handler} ran past its time limit of {seconds:g} s")


class _Job:
    __slots__ = ("done", "error", "finished", "func", "late", "result")

    def __init__(self, func: Callable[[], Any]) -> None:
        self.func = func
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.late = False  # the caller gave up on it


class TimedCalls:
    """Runs sync calls with a time limit. Python cannot stop a thread: a call past its limit
    is left running on its thread (abandoned, counted in ``abandoned``), its caller goes on,
    and the thread comes back for other calls once (if ever) the call returns. What the late
    call would commit is fenced by its context, not here."""

    def __init__(self, on_change: Callable[[int], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[_Job]] = []
        self.abandoned = 0
        self._on_change = on_change  # told the number abandoned when it changes

    def call(self, func: Callable[[], Any], timeout: float, name: str) -> Any:
        """What ``func()`` returned (raised, it raises); `HandlerTimeout` after ``timeout``."""
        context = contextvars.copy_context()  # the caller's log fields and trace
        job = _Job(lambda: context.run(func))
        with self._lock:
            jobs = self._idle.pop() if self._idle else self._runner()
        jobs.put(job)
        job.done.wait(timeout)
        with self._lock:
            if not job.finished:
                job.late = True
                self.abandoned += 1
                abandoned = self.abandoned
            else:
                self._idle.append(jobs)
                abandoned = -1
        if abandoned >= 0:
            if self._on_change is not None:
                self._on_change(abandoned)
            log.error("handler.abandoned", handler=name, timeout_s=timeout, threads=abandoned)
            raise HandlerTimeout(name, timeout)
        if job.error is not None:
            raise job.error
        return job.result

    def _runner(self) -> queue.SimpleQueue[_Job]:
        """(Lock held.) A new thread taking jobs from the queue it returns."""
        jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        thread = threading.Thread(target=self._run, args=(jobs,), name="cdc-timed", daemon=True)
        thread.start()
        return jobs

    def _run(self, jobs: queue.SimpleQueue[_Job]) -> None:
        while True:
            job = jobs.get()
            try:
                job.result = job.func()
            except BaseException as exc:  # handed to the caller, as a direct call would
                job.error = exc
            with self._lock:
                job.finished = True
                late = job.late
                if late:
                    self.abandoned -= 1
                    abandoned = self.abandoned
                    self._idle.append(jobs)
            job.done.set()
            if late:
                log.warning("handler.returned_late", threads=abandoned)
                if self._on_change is not None:
                    self._on_change(abandoned)


class Pacer:
    """A workload's rate: attempts start at least ``interval_s`` apart, over all threads."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._next = 0.0

    def reserve(self) -> float:
        """Take the next start: how many seconds to wait for it (0: start now)."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval_s
            return start - now
