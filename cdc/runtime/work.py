"""In-flight work: which offsets of a partition may be committed, and worker threads that
keep records of one key in order while records of other keys run side by side."""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable

import structlog

log = structlog.get_logger("cdc.consumer")


class PartitionWork:
    """The records of one assigned partition that were fetched but are not finished.

    Offsets are added in fetch order and finished in any order; the committable position is
    one past the last offset of the finished prefix, so a record is never committed before
    every record ahead of it is done.

    ``hurry`` is set when the consumer stops: a change waiting to be retried is given up
    (read again later). ``abandon`` is set when the partition is revoked or the shutdown
    deadline passes: work not yet started is dropped as well."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.hurry = threading.Event()
        self.abandon = threading.Event()
        self._lock = threading.Lock()
        self._quiet = threading.Condition(self._lock)
        self._pending: deque[int] = deque()
        self._times: deque[int] = deque()  # each pending record's Kafka timestamp (ms)
        self._finished: set[int] = set()
        self._running = 0
        self._position: int | None = None  # next offset to commit
        self._stored: int | None = None
        self.paused = False  # fetching paused for this partition (the consumer thread's)
        self.since = time.monotonic()  # when it was assigned (or renewed)

    def give_up(self) -> None:
        self.hurry.set()
        self.abandon.set()

    def begin(self) -> bool:
        """Whether a record's work may start; if so, `end()` must follow."""
        with self._lock:
            if self.abandon.is_set():
                return False
            self._running += 1
            return True

    def end(self) -> None:
        with self._lock:
            self._running -= 1
            if not self._running:
                self._quiet.notify_all()

    def quiesce(self, timeout: float) -> bool:
        """Wait until no record's work is running; False on timeout."""
        with self._quiet:
            return self._quiet.wait_for(lambda: not self._running, max(timeout, 0.0))

    @property
    def position(self) -> int | None:
        """The offset to commit: one past the finished prefix (None: nothing finished)."""
        with self._lock:
            return self._position

    def add(self, offset: int, timestamp_ms: int = 0) -> None:
        with self._lock:
            self._pending.append(offset)
            self._times.append(timestamp_ms)

    def skip(self, offset: int, timestamp_ms: int = 0) -> None:
        """`add` and `finish` at once, for a record finished as soon as it is read."""
        with self._lock:
            if self._pending:  # its head is not finished: nothing moves yet
                self._pending.append(offset)
                self._times.append(timestamp_ms)
                self._finished.add(offset)
            else:
                self._position = offset + 1

    def finish(self, offset: int) -> None:
        with self._lock:
            self._finished.add(offset)
            while self._pending and self._pending[0] in self._finished:
                done = self._pending.popleft()
                self._times.popleft()
                self._finished.discard(done)
                self._position = done + 1

    @property
    def oldest_ms(self) -> int | None:
        """The Kafka timestamp of the oldest record not finished (None: all are)."""
        with self._lock:
            return self._times[0] if self._times else None

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def to_store(self) -> int | None:
        """The position to store if it moved since the last call, else None."""
        with self._lock:
            if self._position is None or self._position == self._stored:
                return None
            self._stored = self._position
            return self._position


Key = Hashable
Task = tuple[Key, Callable[[], None]]


class KeyedWorkers:
    """``workers`` threads run submitted tasks; tasks with equal keys run one at a time, in
    the order submitted.

    Threads are woken as the tasks need them: while tasks finish quickly (CPU work, under
    the GIL) one thread runs them all, since more would only take the GIL from each other
    and from the consumer thread; once a task runs longer than ``slow_s`` (it waits on I/O)
    every ready key gets a thread."""

    def __init__(self, workers: int, name: str = "cdc-worker", slow_s: float = 0.001) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queues: dict[Key, deque[Callable[[], None]]] = {}
        self._ready: deque[Key] = deque()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._slow_s = slow_s
        self._slow = False  # the last task to finish ran longer than slow_s
        self._waiting = 0  # threads waiting for a task
        self._started: dict[int, float] = {}  # running tasks' start, per thread
        self._threads = [
            # In the caller's log context (its workload), each thread a copy of its own.
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(self._work, i),
                name=f"{name}-{i}",
                daemon=True,
            )
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def submit(self, tasks: Iterable[tuple[Key, Callable[[], None]]]) -> None:
        """Queue ``(key, task)`` pairs (a whole fetch at once) and wake threads as needed.
        Called with nothing, it still wakes threads for ready keys stuck behind a slow task."""
        with self._lock:
            for key, task in tasks:
                queue = self._queues.get(key)
                if queue is None:
                    self._queues[key] = deque([task])
                    self._ready.append(key)
                else:
                    queue.append(task)  # runs after the tasks ahead of it with this key
            self._wake_some()

    def _wake_some(self) -> None:
        """(Lock held.) One thread when none runs; one per ready key when tasks are slow."""
        if not self._ready or not self._waiting:
            return
        if not self._started:
            self._wake.notify(1)
            return
        slow = self._slow
        if not slow:
            since = time.monotonic() - self._slow_s
            slow = any(t < since for t in self._started.values())
        if slow:
            self._wake.notify(min(len(self._ready), self._waiting))

    def queued(self, key: Key) -> bool:
        """Whether a task of ``key`` is queued or running. Without the lock: only the caller
        of `submit` adds keys, so for it a False is never stale."""
        return key in self._queues

    @property
    def idle(self) -> bool:
        """No task queued or running (as of the call; see `queued`)."""
        return not self._queues

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted task is finished; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._queues, timeout)

    def close(self) -> None:
        """Stop the threads once they finish their current task; queued tasks are dropped.
        A task still running after this is abandoned (the threads are daemons)."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()

    def _work(self, me: int) -> None:
        key: Key = None
        took: float | None = None  # how long the task of `key` just ran
        while True:
            # One critical section per task: the last one's bookkeeping and taking the next.
            with self._lock:
                if took is not None:
                    del self._started[me]
                    self._slow = took > self._slow_s
                    queue = self._queues[key]
                    queue.popleft()
                    if queue:
                        self._ready.append(key)
                    else:
                        del self._queues[key]
                        if not self._queues:
                            self._idle.notify_all()
                    if self._slow:
                        self._wake_some()
                while not self._ready and not self._closed:
                    self._waiting += 1
                    self._wake.wait()
                    self._waiting -= 1
                if self._closed:
                    return
                key = self._ready.popleft()
                task = self._queues[key][0]
                started = self._started[me] = time.monotonic()
            try:
                task()
            except Exception:
                # A task handles its own failures; one that escapes must not kill the thread.
                log.exception("worker.task_failed", key=repr(key))
            took = time.monotonic() - started
