"""What a handler's return value or exception means, retries with backoff, async handlers,
and publishing only after success; on a real corpus change."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from threading import get_ident
from typing import Any

import psycopg
import pytest
from psycopg_pool import PoolTimeout
from pydantic import ValidationError, field_validator

from cdc import (
    Change,
    Changes,
    ConfigError,
    Context,
    DeadLetter,
    Retry,
    Row,
    on_change,
    on_transaction,
)
from cdc.errors import DecodeError
from cdc.routing import Route, handlers_of
from cdc.runtime import Backoff, Dispatcher, Outcome, Resources
from cdc.runtime.runs import HandlerRun, Later, Stopping
from cdc.settings import Settings
from cdc.testing import run_handler
from tests.corpus.load import first_insert

TABLE = "corpus.all_types"


CHANGE = first_insert()


def route(func: Any, **options: Any) -> Route:
    return Route(handlers_of(on_change(TABLE, **options)(func))[-1], snapshot_reads=False)


class Waits:
    def __init__(self, stop_after: int | None = None) -> None:
        self.delays: list[float] = []
        self.stop_after = stop_after

    def __call__(self, seconds: float) -> bool:
        self.delays.append(seconds)
        return self.stop_after is not None and len(self.delays) >= self.stop_after


def dispatcher(waits: Waits | None = None, attempts: int = 4) -> Dispatcher:
    return Dispatcher(Resources(Settings()), Backoff(attempts, 0.1, 0.3), wait=waits or Waits())


def returning(value: Any) -> Any:
    def handler(change: Change, ctx: Context) -> Any:
        if isinstance(value, Exception) and not isinstance(value, Retry | DeadLetter):
            raise value
        return value

    return handler


@pytest.mark.parametrize(
    ("result", "outcome", "reason"),
    [
        (None, Outcome.DONE, ""),
        (Retry("busy", after=2.5), Outcome.RETRY, "busy"),
        (DeadLetter("customer gone"), Outcome.DEAD_LETTER, "customer gone"),
        (ValueError("boom"), Outcome.RETRY, "ValueError: boom"),
        (42, Outcome.DEAD_LETTER, "returned int; a handler returns None, Retry or DeadLetter"),
    ],
)
def test_return_values(result: Any, outcome: Outcome, reason: str) -> None:
    run = dispatcher().attempt(route(returning(result)), CHANGE)
    assert (run.outcome, run.reason) == (outcome, reason)
    if isinstance(result, Retry):
        assert run.retry_after == 2.5


def test_raised_instructions_mean_the_same() -> None:
    def raises_retry(change: Change, ctx: Context) -> None:
        raise Retry("later", after=1)

    def raises_dead_letter(change: Change, ctx: Context) -> None:
        raise DeadLetter("never")

    assert dispatcher().attempt(route(raises_retry), CHANGE).outcome is Outcome.RETRY
    assert dispatcher().attempt(route(raises_dead_letter), CHANGE).outcome is Outcome.DEAD_LETTER


def test_a_column_that_contradicts_its_schema_is_dead_lettered_not_retried() -> None:
    # Rows convert a column when it is first read: a value its schema does not allow raises
    # DecodeError in the handler, and reading it again would raise the same.
    error = DecodeError("c_int: expected an integer", topic="t", partition=0, offset=7)

    def reads_a_bad_column(change: Change, ctx: Context) -> None:
        raise error

    waits = Waits()
    run = dispatcher(waits).run(route(reads_a_bad_column), CHANGE)
    assert (run.outcome, run.attempts, run.reason) == (Outcome.DEAD_LETTER, 1, str(error))
    assert run.error is error
    assert waits.delays == []


class Wrong(Row):
    id: int
    c_missing_column: str


def test_a_row_that_does_not_fit_the_model_is_dead_lettered_without_a_call() -> None:
    calls: list[Change] = []
    run = dispatcher().attempt(route(lambda c, ctx: calls.append(c), model=Wrong), CHANGE)
    assert run.outcome is Outcome.DEAD_LETTER
    assert run.reason.startswith("row does not fit Wrong")
    assert "c_missing_column" in run.reason
    assert calls == []


class Broken(Row):
    id: int
    c_numeric: Decimal

    @field_validator("c_numeric", mode="before")
    @classmethod
    def explode(cls, value: Any) -> Any:
        raise LookupError("a validator that fails the way pydantic does not wrap")


class RawDecimal(Row):
    id: int
    total: Decimal


def test_any_failure_to_type_the_row_is_the_rows_and_names_the_handler() -> None:
    """A model that raises something pydantic does not wrap, or a raw value its field cannot
    read, is dead-lettered under the handler's name with the model and the reason, not as a
    fault of the consumer's."""
    run = dispatcher().attempt(route(lambda c, ctx: None, model=Broken), CHANGE)
    assert run.outcome is Outcome.DEAD_LETTER
    assert run.handler.endswith("<lambda>")
    assert run.reason.startswith("row does not fit Broken: LookupError: a validator")
    with pytest.raises(ValidationError, match=r"total: KeyError: 'value'"):
        RawDecimal.model_validate({"id": 1, "total": {"scale": 2}})  # no `value`


def test_fails_twice_then_succeeds() -> None:
    attempts: list[int] = []

    def flaky(change: Change, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) < 3:
            raise ConnectionError("database restarting")

    waits = Waits()
    run = dispatcher(waits).run(route(flaky), CHANGE)
    assert (run.outcome, run.attempts) == (Outcome.DONE, 3)
    assert attempts == [1, 2, 3]
    # Exponential with jitter: attempt n waits between half and all of first * 2**(n-1).
    assert 0.05 <= waits.delays[0] <= 0.1
    assert 0.1 <= waits.delays[1] <= 0.2


def test_always_failing_is_dead_lettered_after_the_last_attempt() -> None:
    waits = Waits()
    run = dispatcher(waits, attempts=4).run(route(returning(OSError("down"))), CHANGE)
    assert (run.outcome, run.attempts) == (Outcome.DEAD_LETTER, 4)
    assert run.reason == "gave up after 4 attempts: OSError: down"
    assert len(waits.delays) == 3
    assert max(waits.delays) <= 0.3  # capped


def test_an_unreachable_database_is_waited_out_beyond_the_attempts() -> None:
    calls: list[int] = []
    outage = [
        psycopg.OperationalError("connection refused"),  # no SQLSTATE: never connected
        PoolTimeout("couldn't get a connection after 30.00 sec"),
        psycopg.errors.AdminShutdown(),  # 57P01: terminating connection
        psycopg.errors.CannotConnectNow(),  # 57P03: the database system is starting up
        psycopg.OperationalError("server closed the connection unexpectedly"),
    ]

    def during_restart(change: Change, ctx: Context) -> None:
        calls.append(ctx.attempt)
        if len(calls) <= len(outage):
            raise outage[len(calls) - 1]

    waits = Waits()
    run = dispatcher(waits, attempts=2).run(route(during_restart), CHANGE)
    # Five failures against two attempts allowed: none of them counted against the change.
    assert (run.outcome, run.attempts) == (Outcome.DONE, 1)
    assert calls == [1] * 6
    assert len(waits.delays) == 5
    assert max(waits.delays) <= 0.3


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.UniqueViolation(),  # the handler's own statement is refused
        psycopg.errors.QueryCanceled(),  # statement_timeout: an OperationalError, not an outage
        psycopg.errors.DeadlockDetected(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_from_a_reachable_database_count_as_attempts(error: Exception) -> None:
    run = dispatcher(attempts=3).run(route(returning(error)), CHANGE)
    assert (run.outcome, run.attempts) == (Outcome.DEAD_LETTER, 3)


def test_retry_after_is_honoured_and_stopping_abandons() -> None:
    waits = Waits(stop_after=1)
    with pytest.raises(Stopping):
        dispatcher(waits).run(route(returning(Retry("later", after=7))), CHANGE)
    assert waits.delays == [7]


def test_try_run_returns_where_it_would_wait_and_run_goes_on_from_there() -> None:
    """The consumer thread never waits: `try_run` hands back the state of a run that must
    wait, and `run` goes on with it on a worker, attempts and outages counted on."""
    calls: list[int] = []
    failures: list[Exception] = [
        psycopg.OperationalError("connection refused"),  # an outage: the same attempt again
        ValueError("not yet"),  # attempt 1 failed: attempt 2 next
    ]

    def flaky(change: Change, ctx: Context) -> None:
        calls.append(ctx.attempt)
        if failures:
            raise failures.pop(0)

    d, waits, r = dispatcher(), Waits(), route(flaky)
    later = d.try_run(r, CHANGE)
    assert isinstance(later, Later)
    assert (later.attempt, later.outage) == (1, 1)
    assert 0.05 <= later.delay <= 0.1
    run = d.run(r, CHANGE, waits, later=later)
    assert (run.outcome, run.attempts) == (Outcome.DONE, 2)
    assert calls == [1, 1, 2]
    assert waits.delays[0] == later.delay  # first the wait try_run did not do
    assert isinstance(d.try_run(route(returning(None)), CHANGE), HandlerRun)
    stopped = Waits(stop_after=1)
    with pytest.raises(Stopping):
        d.run(r, CHANGE, stopped, later=Later(2, 0.0, 0, 3.0))
    assert stopped.delays == [3.0]


def test_async_handlers_share_one_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def handler(change: Change, ctx: Context) -> None:
        await asyncio.sleep(0)
        loops.append(asyncio.get_running_loop())
        if len(loops) == 1:
            raise Retry("once more")

    d = dispatcher()
    assert d.run(route(handler), CHANGE).outcome is Outcome.DONE
    assert len(loops) == 2
    assert loops[0] is loops[1]
    d.close()


def test_async_runs_handed_to_the_loop_together_run_in_turn() -> None:
    calls: list[int] = []

    async def handler(change: Change, ctx: Context) -> None:
        await asyncio.sleep(0)
        calls.append(len(calls))
        assert asyncio.current_task() is not None  # a task: asyncio.timeout() works

    d = dispatcher()
    r = route(handler)
    runs = d.try_run_all([(r, CHANGE)] * 5)
    assert [run.outcome for run in runs if isinstance(run, HandlerRun)] == [Outcome.DONE] * 5
    assert calls == [0, 1, 2, 3, 4]
    d.close()


def test_async_runs_stop_after_one_that_is_not_done(recwarn: pytest.WarningsRecorder) -> None:
    calls: list[int] = []

    async def handler(change: Change, ctx: Context) -> None:
        calls.append(len(calls))
        if len(calls) == 2:
            raise Retry("busy", after=1.5)

    d = dispatcher()
    runs = d.try_run_all([(route(handler), CHANGE)] * 4)
    # The second waits for its next attempt; the two after it were not started (and their
    # coroutines closed: no "never awaited" warning).
    assert len(runs) == 2
    assert calls == [0, 1]
    assert isinstance(runs[0], HandlerRun)
    assert runs[0].outcome is Outcome.DONE
    assert runs[1] == Later(2, runs[1].spent, 0, 1.5)
    assert not [w for w in recwarn if "never awaited" in str(w.message)]
    d.close()


def test_async_runs_publish_from_the_calling_thread_and_stop_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    sent: list[tuple[int, int]] = []  # (records, thread)

    async def handler(change: Change, ctx: Context) -> None:
        calls.append(len(calls))
        if len(calls) == 2:
            ctx.publish("follow-ups", {"n": 2})

    d = dispatcher()
    monkeypatch.setattr(d.resources, "send", lambda out: sent.append((len(out), get_ident())))
    runs = d.try_run_all([(route(handler), CHANGE)] * 3)
    # The loop does not wait for the broker: the record is sent from here, and the runs
    # after it wait for that (they start again on their own).
    assert calls == [0, 1]
    assert sent == [(1, get_ident())]
    assert [r.outcome for r in runs if isinstance(r, HandlerRun)] == [Outcome.DONE] * 2
    assert len(runs) == 2
    d.close()


def test_published_records_leave_only_on_success() -> None:
    def publishes(change: Change, ctx: Context) -> None:
        ctx.publish("follow-ups", {"id": change.key["id"] if change.key else None}, key="k")
        if ctx.attempt == 1:
            raise Retry("first attempt fails after publishing")

    r = route(publishes)
    first = dispatcher().attempt(r, CHANGE, 1, publish=False)
    assert first.outcome is Outcome.RETRY
    assert first.published == []
    second = dispatcher().attempt(r, CHANGE, 2, publish=False)
    assert second.outcome is Outcome.DONE
    (record,) = second.published
    assert (record.topic, record.value, record.key) == ("follow-ups", b'{"id":4}', b"k")
    assert dict(record.headers)["cdc.cause"] == CHANGE.idempotency_key.encode()


def test_run_handler_applies_the_filters() -> None:
    @on_change(TABLE, ops="u")
    def on_update(change: Change, ctx: Context) -> None: ...

    assert run_handler(on_update, CHANGE).outcome is Outcome.SKIPPED
    with pytest.raises(ConfigError, match="handles"):
        run_handler(on_change("public.other")(returning(None)), CHANGE)


def test_run_handler_takes_lists_for_batch_and_transaction_handlers() -> None:
    got: list[Any] = []

    @on_change(TABLE, batch=10)
    def sink(changes: list[Change], ctx: Context) -> None:
        got.append([c.op.value for c in changes])

    @on_transaction(TABLE)
    def whole(changes: Changes, ctx: Context) -> None:
        got.append((changes.transaction, len(changes)))
        ctx.publish("out", "x")

    assert run_handler(sink, [CHANGE, CHANGE]).outcome is Outcome.DONE
    run = run_handler(whole, Changes([CHANGE], "7:42"))
    assert run.outcome is Outcome.DONE
    assert got == [["c", "c"], ("7:42", 1)]
    # The follow-up names the transaction as its cause.
    assert dict(run.published[0].headers)["cdc.cause"].endswith(b"/7:42")  # type: ignore[union-attr]


def test_a_reason_never_shows_a_sensitive_columns_value() -> None:
    def quoting(change: Change, ctx: Context) -> None:
        raise ValueError(f"refused {change.after['c_text']!r} and {change.after['c_varchar']!r}")

    sensitive = {TABLE: frozenset({"c_text"})}
    d = Dispatcher(Resources(Settings()), Backoff(1, 0.1, 0.3), wait=Waits(), sensitive=sensitive)
    run = d.run(route(quoting), CHANGE)
    assert run.outcome is Outcome.DEAD_LETTER
    assert "héllo" not in run.reason
    assert "********" in run.reason
    assert "'varchar'" in run.reason  # not sensitive: shown
