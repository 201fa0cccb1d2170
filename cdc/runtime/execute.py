"""Execute: run each record's handlers, here when quick, else on the keyed workers."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import cast

import structlog

from cdc.events import Change, TransactionEvent
from cdc.routing import Routable, Route
from cdc.runtime.control import EVERY, Controls
from cdc.runtime.debounce import Debounce
from cdc.runtime.dispatch import Dispatcher
from cdc.runtime.groups import Batches, Join
from cdc.runtime.metrics import Metrics
from cdc.runtime.park import Parker
from cdc.runtime.paused import Paused
from cdc.runtime.records import Handled, Observer, Pending, Taken, Wait, where
from cdc.runtime.runs import HandlerRun, Later, Outcome, Stopping
from cdc.runtime.tally import Observed, Tally
from cdc.runtime.transactions import Transactions
from cdc.runtime.work import Key, KeyedWorkers, PartitionWork, Task

log = structlog.get_logger("cdc.consumer")
# A handler that ran this long lately is handed to the workers rather than run on the
# consumer thread: it waits on I/O, and others can run meanwhile. A handler starts out on
# the workers, as if it had run _UNPROVEN_S, and moves to the consumer thread after a few
# dozen quick runs: one that blocks from its first change never holds up fetching.
_INLINE_S = 0.001
_UNPROVEN_S = 0.01


class Executor:
    """Runs handlers through the dispatcher (its retries, the ledger, publishing) and hands
    each finished record to its `PartitionWork` and the observer."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        parker: Parker,
        tally: Tally,
        *,
        concurrency: int,
        asynchronous: set[str],
        observer: Observer | None,
        stop: threading.Event,
        lists: bool = False,
        transaction_limit: int = 500,
        limited: frozenset[str] = frozenset(),
        controls: Controls | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self._controls = controls or Controls("")
        self._pauses: frozenset[str] = frozenset()  # as of the fetch being run (`resume`)
        self._parker = parker
        self._tally = tally
        self._metrics: Metrics = tally.metrics
        self._observer = observer
        self._stop = stop
        self._one_worker = concurrency == 1
        self._lists = lists  # some handler takes changes in lists
        # Handlers that are coroutines: they run on the dispatcher's loop, handed over by a
        # worker, or (quick ones) a batch's runs together from the consumer thread.
        self._async = asynchronous
        # How long each handler ran lately (jumps up at once, comes down slowly).
        # Handlers with a time limit or a rate never run on the consumer thread: they may
        # wait, and it must not. As if they ran forever.
        self._pace: dict[str, float] = dict.fromkeys(limited, math.inf)
        self.workers = KeyedWorkers(0)  # replaced by start()
        self.batches = Batches(dispatcher, parker, tally, self._submit, stop)
        self.debounce = Debounce(dispatcher, parker, tally, self._submit, stop)
        self.transactions = Transactions(
            dispatcher, parker, tally, self._submit, stop, transaction_limit
        )
        self.paused = Paused(dispatcher, parker, tally, self._submit, stop)

    def start(self, concurrency: int) -> KeyedWorkers:
        self.workers = KeyedWorkers(concurrency)
        return self.workers

    def _submit(self, tasks: list[Task]) -> None:
        self.workers.submit(tasks)

    def _split(self, work: PartitionWork, taken: Taken, key: Key) -> bool:
        """Hold the record for each list handler that wants it and each paused handler;
        whether it has handlers of its own to run too."""
        paused = self._pauses
        held = [r for r in taken.routes if r.grouped or _paused(paused, r.name)]
        if not held:
            return True
        own = taken.routes = [r for r in taken.routes if r not in held]
        join = Join(work, taken, len(held) + bool(own), self._joined)
        if own:
            taken.join = join
        for route in held:
            if _paused(paused, route.name):
                self.paused.add(route, join, key)
            else:
                self._group(route, join)
        return bool(own)

    def _group(self, route: Route, join: Join) -> None:
        """The record to the list, debounced key or transaction ``route`` runs it in."""
        if route.batch is not None:
            self.batches.add(route, join)
        elif self.debounce.wants(route):
            self.debounce.add(route, join)
        elif isinstance(join.taken.event, TransactionEvent):
            self.transactions.end(route, join)
        else:
            self.transactions.change(route, join)

    def resume(self) -> None:
        """(Consumer thread.) What paused handlers hold runs once they are resumed: checked
        before each fetch's records, with the pauses the fetch goes by, so a key's held
        changes go before its later ones."""
        self._pauses = pauses = self._controls.pauses()
        if self.paused.held:
            self.paused.resume(lambda name: _paused(pauses, name), self._group)

    def _joined(self, join: Join, handled: Handled) -> None:
        """Every part of a record is done: count it and let its offset move."""
        self._count(join.taken, handled)
        join.work.finish(handled.offset)
        if self._observer is not None:
            self._observer(handled)

    def batch(
        self, items: list[Handled | Taken], works: dict[tuple[str, int], PartitionWork]
    ) -> None:
        """Finish what needs no handler; run quick handlers here (quick coroutine handlers
        together, on the dispatcher's loop) and hand the rest to the workers, the whole
        batch at once. Records of one key keep their order: one runs here only while
        nothing of its key waits for a worker."""
        tasks: list[Task] = []
        keys: set[Key] = set()  # the keys of those tasks
        group: list[tuple[PartitionWork, Taken, Key]] = []  # for the loop, in order
        grouped: set[Key] = set()
        observer = self._observer
        lists = self._lists
        asynchronous = self._async
        quick = not self.dispatcher.debug  # else each run logs its start and end
        self.resume()
        pauses = self._pauses
        rewinds = self._controls.rewinds
        windows = rewinds.windows
        timed = self._tally.here(self._metrics.handler_seconds)
        lags = self._tally.here(self._metrics.end_to_end)
        for item in items:
            if self._stop.is_set():
                break  # the rest of the fetch is read again after a restart
            work = works.get((item.topic, item.partition))
            if work is None:  # not (or no longer) ours: the owner reads it
                continue
            if isinstance(item, Handled):
                work.skip(item.offset)
                if observer is not None:
                    observer(item)
                continue
            msg = item.msg
            timestamp = msg.timestamp()[1]
            # A record is added to its partition's work before anything can finish it, but
            # not one that `_quick` finishes at once.
            added = False
            if windows:  # a handler's rewind re-reads this: that handler alone runs it
                only = rewinds.only(item.topic, item.partition, item.offset)
                if only is not None:
                    item.routes = [r for r in item.routes if r.name == only]
                    if not item.routes:
                        work.skip(item.offset, timestamp)
                        continue
            # One key at a time, in partition order; a record without a key orders per partition.
            key = (item.topic, item.partition, msg.key())
            if (lists and any(r.grouped for r in item.routes)) or (
                pauses and any(_paused(pauses, r.name) for r in item.routes)
            ):
                work.add(item.offset, timestamp)
                added = True
                if not self._split(work, item, key):
                    continue  # held for lists or paused handlers, and nothing else to run
            pending = None
            here = key not in keys and self._inline(key, item.routes)
            if here and item.routes[0].name in asynchronous:
                if not added:
                    work.add(item.offset, timestamp)
                group.append((work, item, key))
                grouped.add(key)
                continue
            if key in grouped:  # what of its key went before it runs first
                self._run_group(group, tasks, keys)
                grouped.clear()
            if here:
                # Quick handlers run right here: handing them to a thread costs more than they do.
                if quick and not added:
                    # It adds the record to its work if it does not finish it.
                    pending = self._quick(work, item, timestamp, timed, lags)
                else:
                    if not added:
                        work.add(item.offset, timestamp)
                    pending = self._handle(work, item, None, None)
                if pending is None:
                    continue
            elif not added:
                work.add(item.offset, timestamp)
            tasks.append((key, self._task(work, item, pending)))
            keys.add(key)
        self._run_group(group, tasks, keys)
        self.workers.submit(tasks)

    def _run_group(
        self, group: list[tuple[PartitionWork, Taken, Key]], tasks: list[Task], keys: set[Key]
    ) -> None:
        """Run the records of quick coroutine handlers with one hand-off to the loop; one
        that has to wait before its next attempt goes to the workers, and so does every
        record of its key after it. Empties ``group``."""
        while group:
            runnable = []
            for work, taken, key in group:
                if key in keys:  # behind a record of its key that waits for a worker
                    tasks.append((key, self._task(work, taken, None)))
                else:
                    runnable.append((work, taken, key))
            if not runnable:
                break
            runs = [(taken.routes[0], cast(Routable, taken.event)) for _, taken, _ in runnable]
            tried = self.dispatcher.try_run_all(runs)
            for (work, taken, key), first in zip(runnable, tried, strict=False):
                pending = self._handle(work, taken, None, None, first)
                if pending is not None:
                    tasks.append((key, self._task(work, taken, pending)))
                    keys.add(key)
            group[:] = runnable[len(tried) :]  # not started: after one that was not done
        group.clear()

    def _task(
        self, work: PartitionWork, taken: Taken, pending: Pending | None
    ) -> Callable[[], None]:
        def task() -> None:
            if not work.begin():
                return  # revoked or past the deadline: not finished, so read again
            try:
                self._handle(work, taken, pending, work.hurry.wait)
            finally:
                work.end()

        return task

    def _inline(self, key: Key, routes: list[Route]) -> bool:
        """Whether to run the handlers on the consumer thread: all are sync and ran quickly
        lately, nothing of the key waits for a worker, and with one worker, none is busy
        (``concurrency: 1`` runs one handler at a time)."""
        workers = self.workers
        if self._one_worker and not workers.idle:
            return False
        for route in routes:
            if self._pace.get(route.name, _UNPROVEN_S) > _INLINE_S:
                return False
            if route.name in self._async and len(routes) > 1:
                return False  # one coroutine handler's records are run together, on the loop
        return not workers.queued(key)

    def _quick(
        self, work: PartitionWork, taken: Taken, timestamp: int, timed: Observed, lags: Observed
    ) -> Pending | None:
        """`_handle` for a record not yet added to its partition's work, whose handlers are
        sync and quick: when each is simply done on its first attempt, the record is counted
        and finished with no more than that needs (no context log, no `HandlerRun` unless
        the observer takes it); else it goes the whole way from the handler that was not.
        ``timed``, ``lags``: the tally's observations of handler seconds and of lag."""
        event: Routable = taken.event  # type: ignore[assignment]  # not an END: not grouped
        table, dispatcher, pace = taken.table, self.dispatcher, self._pace
        ran = 0  # handlers simply done: the last this many in `timed`
        for route in taken.routes:
            name = route.name
            try:
                tried = dispatcher.first(route, event)
            except Exception as exc:  # a fault of ours, not the record's: park it
                work.add(taken.offset, timestamp)
                return self._finish(work, taken, self._faulted(taken, exc, None))
            if not isinstance(tried, float):
                work.add(taken.offset, timestamp)
                so_far = self._so_far(timed, ran)
                return self._handle(work, taken, so_far, None, attempted=tried)
            timed.append(((name, table, "done"), tried))
            # As `_paced` notes a run, but only where it can change what `_inline` decides:
            # the handler's pace is at most _INLINE_S, or it would not run here, and a run
            # within that leaves it so; a slower one sets it at once.
            if tried > _INLINE_S:
                pace[name] = tried
            ran += 1
        self._tally.counts[table, taken.op, "handled"] += 1
        committed = committed_at(event)
        if committed is not None:
            lags.append(((table,), time.time() - committed))
        work.skip(taken.offset, timestamp)
        if self._observer is not None:
            self._observer(taken.handled(self._so_far(timed, ran).runs))
        return None

    @staticmethod
    def _so_far(timed: Observed, ran: int) -> Pending:
        """The runs `_quick` found simply done (the last ``ran`` it timed), as `run` goes on
        from them."""
        done = timed[len(timed) - ran :]
        return Pending(tuple(HandlerRun(labels[0], Outcome.DONE, seconds=s) for labels, s in done))

    def _handle(
        self,
        work: PartitionWork,
        taken: Taken,
        pending: Pending | None,
        wait: Wait | None,
        first: HandlerRun | Later | None = None,
        attempted: HandlerRun | None = None,
    ) -> Pending | None:
        """Run the handlers (``wait`` None: without waiting, returning what has to) and
        finish the record; a fault of ours parks it. ``attempted``: the first attempt of the
        next handler to run, made already (`Dispatcher.first`)."""
        try:
            if attempted is not None:
                route = taken.routes[len(pending.runs) if pending is not None else 0]
                first = self.dispatcher.try_run(route, cast(Routable, taken.event), attempted)
            handled: Handled | Pending | None = self.run(taken, wait, pending, first)
        except Stopping:
            return None  # not finished: read again
        except Exception as exc:  # a fault of ours, not the record's: park it, keep going
            handled = self._faulted(taken, exc, wait)
        return self._finish(work, taken, handled)

    def _faulted(self, taken: Taken, exc: Exception, wait: Wait | None) -> Handled | None:
        """A fault of ours, not the record's: the record parked (None: the consumer stops
        first, and it is read again)."""
        msg, table = taken.msg, taken.table
        log.exception("record.failed", exc_info=exc, **where(msg), table=table, op=taken.op)
        try:
            self._parker.park(
                msg,
                f"{type(exc).__name__}: {exc}",
                "InternalError",
                wait=wait or self._stop.wait,
                table=table,
            )
        except Stopping:
            return None
        return taken.handled(parked=(str(exc),))

    def _finish(
        self, work: PartitionWork, taken: Taken, handled: Handled | Pending | None
    ) -> Pending | None:
        """The record finished, unless its handlers wait (returned) or it is read again."""
        if handled is None:
            return None
        if isinstance(handled, Pending):
            return handled
        if taken.join is not None:
            taken.join.done(handled.runs, handled.parked)
            return None
        work.finish(handled.offset)
        if self._observer is not None:
            self._observer(handled)
        return None

    def run(
        self,
        taken: Taken,
        wait: Wait | None,
        pending: Pending | None = None,
        first: HandlerRun | Later | None = None,
    ) -> Handled | Pending:
        """Each route's handler run, from where ``pending`` left off; ``wait`` None: where a
        handler would wait before its next attempt, stop and return that as `Pending`
        (``first``: what the first route's run came to, tried already). A
        handler's dead letter parks the record (``wait`` or the consumer's stop waits out
        a broker outage)."""
        event, table = cast(Routable, taken.event), taken.table
        tally = self._tally
        runs: list[HandlerRun] = []
        parked: list[str] = []
        later = None
        if pending is not None:
            runs, later = list(pending.runs), pending.later
            parked = [r.reason for r in runs if r.outcome is Outcome.DEAD_LETTER]
        for route in taken.routes[len(runs) :]:
            if wait is None:
                tried = first or self.dispatcher.try_run(route, event)
                first = None
                if isinstance(tried, Later):
                    self._paced(route, tried.spent)
                    return Pending(tuple(runs), tried)
                run = tried
            else:
                run = self.dispatcher.run(route, event, wait, later=later)
                later = None
            self._paced(route, run.seconds)
            runs.append(run)
            tally.observe(
                self._metrics.handler_seconds, (route.name, table, run.outcome.value), run.seconds
            )
            if run.attempts > 1:
                self._metrics.retries.labels(route.name, table).inc(run.attempts - 1)
            if run.outcome is Outcome.DEAD_LETTER:
                error = type(run.error).__name__ if run.error is not None else "InvalidResult"
                parked.append(run.reason)
                self._parker.park(
                    taken.msg,
                    run.reason,
                    error,
                    wait=wait or self._stop.wait,
                    handler=route.name,
                    table=table,
                    attempts=run.attempts,
                )
        handled = taken.handled(tuple(runs), tuple(parked))
        if taken.join is None:  # else counted once all its parts are done
            self._count(taken, handled)
        return handled

    def _count(self, taken: Taken, handled: Handled) -> None:
        runs, event, table, tally = handled.runs, taken.event, taken.table, self._tally
        duplicates = sum(r.outcome is Outcome.DUPLICATE for r in runs)
        outcome = (
            "dead_lettered"
            if handled.parked
            else "duplicate"
            if duplicates == len(runs)
            else "handled"
        )
        tally.count(outcome, table, taken.op)
        committed = committed_at(event)
        if committed is not None:
            tally.observe(self._metrics.end_to_end, (table,), time.time() - committed)

    def _paced(self, route: Route, seconds: float) -> None:
        """Note how long a handler ran: a slow run counts at once, quick ones bring it down
        over a few dozen runs. (From any thread: a lost update only delays the switch.)"""
        pace = self._pace.get(route.name, _UNPROVEN_S)
        self._pace[route.name] = seconds if seconds > pace else pace * 0.9 + seconds * 0.1


def _paused(pauses: frozenset[str], handler: str) -> bool:
    return bool(pauses) and (handler in pauses or EVERY in pauses)


def committed_at(event: Routable | TransactionEvent) -> float | None:
    """When the change's transaction committed (to the microsecond where Debezium says), or
    when a domain event's record was produced: seconds since the epoch."""
    if isinstance(event, Change):
        source = event.source
        us = source.ts_us
        return us / 1e6 if us is not None else source.ts_ms / 1000
    ms = event.kafka.timestamp_ms
    return None if ms is None else ms / 1000
