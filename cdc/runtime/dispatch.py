"""Run a change or a domain event through its handlers: one attempt, the meaning of what the
handler returned or raised, and retries with backoff until done or dead-lettered."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from cdc import tracing
from cdc.events import Change, DomainEvent
from cdc.masking import masked_reason
from cdc.routing import Handler, Routable, Route, Runnable
from cdc.runtime.context import Context, RecordLog, Resources, debug_enabled
from cdc.runtime.control import Controls, Skipped
from cdc.runtime.held_keys import HeldKeys, ParkedBehind
from cdc.runtime.limits import HandlerTimeout, Pacer, TimedCalls
from cdc.runtime.runs import (
    Backoff,
    HandlerRun,
    Later,
    Outcome,
    Stopping,
    meaning,
    outcome_of,
    sleep,
    unreachable,
)


class Dispatcher:
    """Calls handlers, from any number of threads. Async handlers run on one event loop,
    in a thread the dispatcher owns, so they run concurrently and their pools and clients
    live across changes."""

    def __init__(
        self,
        resources: Resources,
        backoff: Backoff | None = None,
        wait: Callable[[float], bool] | None = None,
        *,
        timeout_s: float | None = None,
        pacer: Pacer | None = None,
        timed_out: Callable[[str], None] | None = None,
        abandoned: Callable[[int], None] | None = None,
        held: HeldKeys | None = None,
        ordered: frozenset[str] = frozenset(),
        controls: Controls | None = None,
        sensitive: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.resources = resources
        # Per table, the columns whose values never go into a reason (the logs, the
        # dead-letter headers): `sensitive_columns` in cdc.yaml.
        self._sensitive = {t: c for t, c in (sensitive or {}).items() if c}
        # Records an operator skipped (`cdc skip`): dead-lettered, not run.
        self.controls = controls or Controls("")
        self._skips = self.controls.skips
        # Keys parked for a handler in ``ordered`` hold its later changes of the key.
        self.held = held if held is not None else HeldKeys()
        self._held = self.held.slots
        self._ordered = ordered
        self.backoff = backoff or Backoff()
        self.timeout_s = timeout_s  # each attempt's time limit, unless its handler sets one
        self.pacer = pacer
        self._timed_out = timed_out  # told the handler's name when an attempt times out
        self._timed = TimedCalls(abandoned)
        # wait(seconds) sleeps and returns True when the consumer is stopping meanwhile.
        self._wait = wait or sleep
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()
        self._debug = debug_enabled()  # the per-run lines (logging is configured by now)

    def timeout(self, handler: Handler) -> float | None:
        """An attempt's time limit for this handler (None: none)."""
        return handler.timeout_s or self.timeout_s

    def limited(self, handler: Handler) -> bool:
        """Whether the handler's runs have a time limit or a rate: they never run on the
        consumer thread, which must not wait on them."""
        return self.pacer is not None or self.timeout(handler) is not None

    @property
    def debug(self) -> bool:
        """Whether each run logs its start and end (then `first` is not for it)."""
        return self._debug

    def attempt(
        self,
        route: Route,
        change: Runnable,
        attempt: int = 1,
        *,
        publish: bool = True,
        log: Any = None,
    ) -> HandlerRun:
        """One call of the handler, and what its result means. With ``publish=False`` the
        records the handler published are returned, not sent."""
        started = time.perf_counter()
        call = self._call(route, change, attempt, log or RecordLog(change, route.name))
        if isinstance(call, HandlerRun):
            return call
        ctx, result = call
        result = self._awaited(result)
        return self._settle(route.name, result, attempt, ctx, started, publish=publish)

    def first(self, route: Route, change: Routable) -> float | HandlerRun:
        """The first attempt of a run, as `try_run` makes it: the seconds it took when the
        handler was simply done (returned None, published nothing), else the attempt's run,
        for `try_run` to go on from (``first=``). Nothing is built that a quick run, done,
        does not need. (Not for the per-run debug lines: see ``debug``.)"""
        started = time.perf_counter()
        call = self._call(route, change, 1, None)  # its log made if the handler logs
        if isinstance(call, HandlerRun):
            return call
        ctx, result = call
        if result is None and not ctx.published:
            return time.perf_counter() - started
        return self._settle(route.name, self._awaited(result), 1, ctx, started)

    def _awaited(self, result: Any) -> Any:
        """What the handler returned, a coroutine run on the loop (sync handlers too may
        return one); what it raised, if it did."""
        if result is not None and inspect.isawaitable(result):
            try:
                return self._run_async(result)
            except Exception as exc:
                return exc
        return result

    def _call(
        self, route: Route, change: Runnable, attempt: int, log: Any
    ) -> HandlerRun | tuple[Context, Any]:
        """Type the change and call the handler: the dead-letter run of a change that does
        not fit the handler's model, else the context and what the call returned or raised
        (for a coroutine function, the coroutine, not run yet)."""
        handler = route.handler
        if self._skips:
            skipped = self._skipped(route.name, change, attempt)
            if skipped is not None:
                return skipped
        if self._held and route.name in self._ordered:
            hold = self.held.hold(route.name, getattr(change, "kafka", None))
            if hold is not None:
                return HandlerRun(
                    route.name,
                    Outcome.DEAD_LETTER,
                    attempt,
                    hold.behind(route.name),
                    ParkedBehind(route.name),
                )
        try:
            typed = change if route.plain else route.typed(change)
        except Exception as exc:  # typing is deterministic: another attempt cannot help
            model = handler.model.__name__ if handler.model else "?"
            what = "payload" if isinstance(change, DomainEvent) else "row"
            detail = (
                str(exc) if isinstance(exc, ValidationError) else f"{type(exc).__name__}: {exc}"
            )
            return HandlerRun(
                handler.name,
                Outcome.DEAD_LETTER,
                attempt,
                f"{what} does not fit {model}: {detail}",
                exc,
            )
        ctx = Context(typed, handler.name, attempt, log, self.resources)
        try:
            if handler.ledger:  # its table is made on first use: the database may be down
                ctx.ledger = self.resources.ledger()
            timeout = self.timeout(handler)
            if timeout is not None:
                return ctx, self._limited(route, typed, ctx, change, timeout)
            if tracing.enabled():
                meaning = outcome_of(handler.name, attempt)
                return ctx, tracing.traced_call(
                    handler.func, typed, ctx, handler.name, change, attempt, meaning
                )
            return ctx, handler.func(typed, ctx)
        except HandlerTimeout as exc:
            ctx.fenced = exc
            if self._timed_out is not None:
                self._timed_out(handler.name)
            return ctx, exc
        except Exception as exc:  # every failure has a defined meaning
            return ctx, exc

    def _skipped(self, name: str, change: Runnable, attempt: int) -> HandlerRun | None:
        kafka = getattr(change, "kafka", None)
        if kafka is None:
            return None
        order = self.controls.skipped(name, (kafka.topic, kafka.partition, kafka.offset))
        if order is None:
            return None
        reason = f"skipped by an operator: {order.describe()}"
        return HandlerRun(name, Outcome.DEAD_LETTER, attempt, reason, Skipped(name))

    def _limited(
        self, route: Route, typed: Any, ctx: Context, change: Runnable, timeout: float
    ) -> Any:
        """The handler called within its time limit: a sync one on a thread the caller can
        give up on (`HandlerTimeout`), a coroutine cancelled when the limit passes."""
        handler = route.handler
        func = handler.func
        if tracing.enabled():
            meaning = outcome_of(handler.name, ctx.attempt)

            def call() -> Any:
                return tracing.traced_call(
                    handler.func, typed, ctx, handler.name, change, ctx.attempt, meaning
                )
        else:

            def call() -> Any:
                return func(typed, ctx)

        if inspect.iscoroutinefunction(func):
            return self._cancelled_after(call(), timeout, ctx)
        return self._timed.call(call, timeout, handler.name)

    async def _cancelled_after(self, coro: Any, timeout: float, ctx: Context) -> Any:
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            ctx.fenced = HandlerTimeout(ctx.handler, timeout)
            if self._timed_out is not None:
                self._timed_out(ctx.handler)
            raise ctx.fenced from None

    def _settle(
        self,
        name: str,
        result: Any,
        attempt: int,
        ctx: Context,
        started: float,
        *,
        publish: bool = True,
    ) -> HandlerRun:
        """What the handler's result means; once it is done, its records published."""
        run = meaning(name, result, attempt)
        if run.outcome is Outcome.DONE and ctx.published:
            try:
                if publish:
                    self.resources.send(ctx.published)
            except Exception as exc:
                run = HandlerRun(name, Outcome.RETRY, attempt, f"publishing failed: {exc}", exc)
            else:
                run.published = ctx.published
        run.seconds = time.perf_counter() - started
        return run

    def try_run_all(self, runs: Sequence[tuple[Route, Routable]]) -> list[HandlerRun | Later]:
        """`try_run` for runs of coroutine handlers that have proven quick, with one hand-off
        to the event loop: their first attempts run there one after another. The runs after
        the first that is not simply done (it failed, or has records to publish, which are
        sent from here) are not started: the list returned ends with that one."""
        out: list[HandlerRun | Later] = []
        for (route, change), first in zip(runs, self._run_async(self._in_turn(runs)), strict=False):
            if isinstance(first, tuple):
                ctx, result, started = first
                first = self._settle(route.name, result, 1, ctx, started)
            if first.outcome is Outcome.DONE and not self._debug:
                out.append(first)
            else:
                out.append(self._attempts(route, change, None, None, first=first))
        return out

    async def _in_turn(
        self, runs: Sequence[tuple[Route, Routable]]
    ) -> list[HandlerRun | tuple[Context, Any, float]]:
        """(On the loop.) Each run's first attempt in turn, up to the first that is not
        simply done; one with records to publish comes back unsettled, as the context, its
        result and when it started: publishing waits for the broker, and the loop must not."""
        done: list[HandlerRun | tuple[Context, Any, float]] = []
        for route, change in runs:
            log = RecordLog(change, route.name)
            if self._debug:
                log.debug("handler.start")
            started = time.perf_counter()
            call = self._call(route, change, 1, log)
            if isinstance(call, HandlerRun):  # the change does not fit the model
                done.append(call)
                break
            ctx, result = call
            if result is not None and inspect.isawaitable(result):
                try:
                    result = await result
                except Exception as exc:
                    result = exc
            if ctx.published:
                done.append((ctx, result, started))
                break
            run = meaning(route.name, result, 1)
            run.seconds = time.perf_counter() - started
            done.append(run)
            if run.outcome is not Outcome.DONE:
                break
        return done

    def run(
        self,
        route: Route,
        change: Runnable,
        wait: Callable[[float], bool] | None = None,
        *,
        later: Later | None = None,
        attempts: int | None = None,
    ) -> HandlerRun:
        """Attempts until done, dead-lettered or out of attempts (then dead-lettered).

        ``wait(seconds)`` sleeps between attempts and returns True to give up on the change
        (the consumer stops or loses the partition): then `Stopping` is raised. ``later``:
        go on with a run `try_run` left waiting. ``attempts``: at most this many, not the
        backoff's (a database outage is waited out all the same)."""
        run = self._attempts(route, change, wait or self._wait, later, attempts=attempts)
        assert isinstance(run, HandlerRun)
        return run

    def try_run(
        self, route: Route, change: Routable, first: HandlerRun | None = None
    ) -> HandlerRun | Later:
        """Like `run`, but where it would wait before another attempt, return that state
        instead (for `run` to go on with on a thread that may wait). ``first``: the first
        attempt, made already (`first`)."""
        return self._attempts(route, change, None, None, first=first)

    def _attempts(
        self,
        route: Route,
        change: Runnable,
        wait: Callable[[float], bool] | None,
        later: Later | None,
        *,
        log: Any = None,
        first: HandlerRun | None = None,
        attempts: int | None = None,
    ) -> HandlerRun | Later:
        """The attempts of one run (``first``: the first attempt, made already)."""
        most = attempts or route.handler.attempts or self.backoff.attempts
        if log is None:
            log = RecordLog(change, route.name)
        if later is None:
            if self._debug and first is None:
                log.debug("handler.start")
            attempt, spent, outage = 1, 0.0, 0
        else:
            attempt, spent, outage = later.attempt, later.spent, later.outage
            assert wait is not None
            if wait(later.delay):
                raise Stopping
        paced = later is not None and later.paced
        while True:
            if self.pacer is not None and first is None and not paced:
                delay = self.pacer.reserve()
                if delay > 0:
                    if wait is None:
                        return Later(attempt, spent, outage, delay, paced=True)
                    if wait(delay):
                        raise Stopping
            paced = False
            run = first or self.attempt(route, change, attempt, log=log)
            first = None
            if run.reason and self._sensitive:
                columns = self._sensitive.get(getattr(change, "table", ""))
                if columns and isinstance(change, Change):
                    run.reason = masked_reason(change, columns, run.reason)
            spent += run.seconds
            run.seconds = spent
            if run.outcome is Outcome.DONE:
                if self._debug:
                    log.debug("handler.done", attempt=attempt, ms=round(spent * 1000, 2))
                return run
            ms = round(spent * 1000, 2)
            if run.outcome is Outcome.RETRY and unreachable(run.error):
                # The database is down, not the change at fault: wait it out, whatever
                # the attempts allow, and try the same attempt again.
                outage += 1
                delay = self.backoff.delay(outage)
                log.warning("handler.db_unreachable", reason=run.reason, delay_s=round(delay, 3))
                if wait is None:
                    return Later(attempt, spent, outage, delay)
                if wait(delay):
                    raise Stopping
                continue
            outage = 0
            if run.outcome is Outcome.DUPLICATE:
                log.info("handler.duplicate", attempt=attempt, reason=run.reason)
                return run
            if run.outcome is Outcome.DEAD_LETTER:
                log.error("handler.dead_letter", attempt=attempt, reason=run.reason, ms=ms)
                return run
            if attempt >= most:
                log.error("handler.gave_up", attempt=attempt, reason=run.reason, ms=ms)
                run.outcome = Outcome.DEAD_LETTER
                run.reason = f"gave up after {attempt} attempts: {run.reason}"
                return run
            delay = run.retry_after if run.retry_after is not None else self.backoff.delay(attempt)
            log.warning(
                "handler.retry", attempt=attempt, reason=run.reason, delay_s=round(delay, 3)
            )
            if wait is None:
                return Later(attempt + 1, spent, 0, delay)
            if wait(delay):
                raise Stopping
            attempt += 1

    def _run_async(self, coro: Any) -> Any:
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._loop_thread = threading.Thread(
                    target=contextvars.copy_context().run,  # the caller's log context
                    args=(self._loop.run_forever,),
                    name="cdc-async",
                    daemon=True,
                )
                self._loop_thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def close(self) -> None:
        with self._loop_lock:
            loop, thread = self._loop, self._loop_thread
            self._loop = self._loop_thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):  # closing must not hide why we stop
            asyncio.run_coroutine_threadsafe(self.resources.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()
