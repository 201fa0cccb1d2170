"""Groups: records held for handlers that take a list of changes, run a list at a time on
the workers; a record is finished once each part of it (its own handlers, each list it is
in) is done, and only then may its offset move."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import cast

import structlog

from cdc.events import Change, Changes
from cdc.routing import Route
from cdc.runtime.dispatch import Dispatcher, HandlerRun, Outcome, Stopping
from cdc.runtime.park import Parker
from cdc.runtime.records import Handled, Taken
from cdc.runtime.tally import Tally
from cdc.runtime.work import PartitionWork, Task

log = structlog.get_logger("cdc.consumer")

Finish = Callable[["Join", Handled], None]


class Join:
    """A record whose handlers run in parts; the last part to be done finishes it."""

    __slots__ = ("_finish", "_left", "_lock", "_parked", "_runs", "taken", "work")

    def __init__(self, work: PartitionWork, taken: Taken, parts: int, finish: Finish) -> None:
        self.work = work
        self.taken = taken
        self._left = parts
        self._runs: list[HandlerRun] = []
        self._parked: list[str] = []
        self._lock = threading.Lock()
        self._finish = finish

    def done(self, runs: Sequence[HandlerRun], parked: Sequence[str] = ()) -> None:
        with self._lock:
            self._runs += runs
            self._parked += parked
            self._left -= 1
            last = self._left == 0
        if last:
            self._finish(self, self.taken.handled(tuple(self._runs), tuple(self._parked)))


def begin_all(joins: list[Join]) -> tuple[dict[int, PartitionWork], list[Join]]:
    """Begin the work of each partition of ``joins`` (`PartitionWork.end` to follow, for
    each returned) and the joins of those still ours; a revoked one's owner reads its
    records again."""
    works: dict[int, PartitionWork] = {}
    refused: set[int] = set()
    for join in joins:
        w = join.work
        if id(w) not in works and id(w) not in refused:
            if w.begin():
                works[id(w)] = w
            else:
                refused.add(id(w))
    return works, [j for j in joins if id(j.work) in works]


class _Open:
    __slots__ = ("deadline", "joins", "route")

    def __init__(self, route: Route, deadline: float) -> None:
        self.route = route
        self.deadline = deadline
        self.joins: list[Join] = []


class Batches:
    """The open list of each batch handler: closed when full or ``max_wait_s`` after its
    first record, then run on the workers, one list of a handler at a time, in order."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        parker: Parker,
        tally: Tally,
        submit: Callable[[list[Task]], None],
        stop: threading.Event,
    ) -> None:
        self._dispatcher = dispatcher
        self._parker = parker
        self._tally = tally
        self._submit = submit
        self._stop = stop
        # Per handler declaration: one function may be declared for several tables.
        self._open: dict[object, _Open] = {}
        self.held = 0  # records in the open lists

    def add(self, route: Route, join: Join) -> None:
        """(Consumer thread.) Hold the record for the route's next list."""
        handler = route.handler
        batch = self._open.get(handler)
        if batch is None:
            wait = getattr(handler, "max_wait_s", 1.0)
            batch = self._open[handler] = _Open(route, time.monotonic() + wait)
        batch.joins.append(join)
        self.held += 1
        if len(batch.joins) >= (route.batch or 1):
            self._close(handler)

    def due(self) -> None:
        """(Consumer thread.) Close the lists that waited long enough."""
        now = time.monotonic()
        for handler in [h for h, b in self._open.items() if b.deadline <= now]:
            self._close(handler)

    def flush(self) -> None:
        """(Consumer thread.) Close every list now (the consumer stops)."""
        for handler in list(self._open):
            self._close(handler)

    def _close(self, handler: object) -> None:
        batch = self._open.pop(handler)
        self.held -= len(batch.joins)
        self._submit([(("batch", id(handler)), lambda: self._run(batch.route, batch.joins))])

    def _run(self, route: Route, joins: list[Join]) -> None:
        """(A worker.) The list's records whose partitions are still ours, run together."""
        works, kept = begin_all(joins)

        def wait(seconds: float) -> bool:
            return self._stop.wait(seconds) or any(w.hurry.is_set() for w in works.values())

        try:
            if kept:
                self._settle(route, kept, wait, None)
        except Stopping:
            pass  # not finished: read again
        finally:
            for w in works.values():
                w.end()

    def _settle(
        self,
        route: Route,
        joins: list[Join],
        wait: Callable[[float], bool],
        attempts: int | None,
    ) -> None:
        """Run the list; one that fails for good is halved, each half tried once (a change
        alone with every attempt), until what fails is a single change: only it is
        dead-lettered."""
        changes = Changes(cast(Change, j.taken.event) for j in joins)
        run = self._dispatcher.run(route, changes, wait, attempts=attempts)
        table = joins[0].taken.table
        metrics = self._tally.metrics
        self._tally.observe(
            metrics.handler_seconds, (route.name, table, run.outcome.value), run.seconds
        )
        if run.attempts > 1:
            metrics.retries.labels(route.name, table).inc(run.attempts - 1)
        if run.outcome is not Outcome.DEAD_LETTER:
            for join in joins:
                join.done((run,))
            return
        if len(joins) == 1:
            join = joins[0]
            error = type(run.error).__name__ if run.error is not None else "InvalidResult"
            self._parker.park(
                join.taken.msg,
                run.reason,
                error,
                wait=wait,
                handler=route.name,
                table=join.taken.table,
                attempts=run.attempts,
            )
            join.done((run,), (run.reason,))
            return
        half = len(joins) // 2
        log.warning(
            "batch.split",
            handler=route.name,
            changes=len(joins),
            reason=run.reason,
            note="the list failed for good: halves are tried to find the change that fails",
        )
        for part in (joins[:half], joins[half:]):
            self._settle(route, part, wait, None if len(part) == 1 else 1)
