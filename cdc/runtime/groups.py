"""Groups: records held for handlers that take a list of changes, run a list at a time on
the workers; a record is finished once each part of it (its own handlers, each list it is
in) is done, and only then may its offset move."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

import structlog

from cdc.events import Change, Changes
from cdc.routing import Route, Runnable
from cdc.runtime.dispatch import Dispatcher
from cdc.runtime.park import Parker
from cdc.runtime.records import Handled, Taken, Wait
from cdc.runtime.runs import HandlerRun, Outcome, Stopping
from cdc.runtime.tally import Tally
from cdc.runtime.work import PartitionWork, Task

log = structlog.get_logger("cdc.consumer")

Finish = Callable[["Join", Handled], None]
H = TypeVar("H")  # what a `Holding` holds per handler


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


class Holding(Generic[H]):
    """What `Batches` and `Debounce` share: records held for a handler until closed, then
    run on the workers; each run timed and counted, a change failing for good parked."""

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
        self.held = 0  # records held, not yet closed: they count against the window
        # What is held per handler declaration: one function may be declared for several
        # tables.
        self._open: dict[object, H] = {}

    def _guarded(self, joins: list[Join], settle: Callable[[list[Join], Wait], None]) -> None:
        """(A worker.) ``settle`` the records whose partitions are still ours; one the
        consumer stops for (or a revoked partition's) is not finished, so read again."""
        works, kept = begin_all(joins)

        def wait(seconds: float) -> bool:
            return self._stop.wait(seconds) or any(w.hurry.is_set() for w in works.values())

        try:
            if kept:
                settle(kept, wait)
        except Stopping:
            pass  # not finished: read again
        finally:
            for w in works.values():
                w.end()

    def _attempt(
        self, route: Route, runnable: Runnable, table: str, wait: Wait, attempts: int | None
    ) -> HandlerRun:
        """The handler run (with its retries), its time and retries counted."""
        run = self._dispatcher.run(route, runnable, wait, attempts=attempts)
        metrics = self._tally.metrics
        self._tally.observe(
            metrics.handler_seconds, (route.name, table, run.outcome.value), run.seconds
        )
        if run.attempts > 1:
            metrics.retries.labels(route.name, table).inc(run.attempts - 1)
        return run

    def _park(self, route: Route, join: Join, run: HandlerRun, wait: Wait) -> None:
        """The record whose run failed for good to the dead-letter topic; then it is done."""
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


class Batches(Holding[_Open]):
    """The open list of each batch handler: closed when full or ``max_wait_s`` after its
    first record, then run on the workers, one list of a handler at a time, in order."""

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
        route = batch.route

        def settle(joins: list[Join], wait: Wait) -> None:
            self._settle(route, joins, wait, None)

        self._submit([(("batch", id(handler)), lambda: self._guarded(batch.joins, settle))])

    def _settle(
        self,
        route: Route,
        joins: list[Join],
        wait: Wait,
        attempts: int | None,
    ) -> None:
        """Run the list; one that fails for good is halved, each half tried once (a change
        alone with every attempt), until what fails is a single change: only it is
        dead-lettered."""
        changes = Changes(cast(Change, j.taken.event) for j in joins)
        run = self._attempt(route, changes, joins[0].taken.table, wait, attempts)
        if run.outcome is not Outcome.DEAD_LETTER:
            for join in joins:
                join.done((run,))
            return
        if len(joins) == 1:
            self._park(route, joins[0], run, wait)
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
