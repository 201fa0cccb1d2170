"""Workloads: the file's section and the decorators, each workload's settings, time limits
(a sync handler left running and fenced, an async one cancelled), the rate, and one
endpoint's metrics labelled per workload."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdc import Change, ConfigError, Context, on_change, on_event
from cdc.routing import Route, handlers_of
from cdc.runtime import Backoff, Dispatcher, Outcome, Resources
from cdc.runtime.limits import Pacer, TimedCalls
from cdc.runtime.runs import Later
from cdc.runtime.workloads import Workloads, plan, resolve
from cdc.settings import Settings
from cdc.tables.config import parse_watched_tables
from cdc.workload_check import workload_findings
from tests.corpus.load import first_insert

FILE = """
tables:
  public.orders: {}
workloads:
  sync:
    concurrency: 2
    max_in_flight: 50
    retry: {attempts: 9, backoff_s: 2, jitter: 0}
    timeout_s: 30
    rate: {runs: 50, per_s: 1}
    dead_letter_topic: cdc.sync.dlq
    replicas: 3
  idle: {}
"""
WATCHED = parse_watched_tables(FILE)
CHANGE = first_insert()


def handler(**options: Any) -> Any:
    def react(change: Change, ctx: Context) -> None:
        pass

    return handlers_of(on_change("orders", **options)(react))[-1]


def test_a_workload_takes_the_files_options_over_the_environments() -> None:
    env = Settings(group_id="shop", concurrency=8, retry_attempts=5, retry_backoff_max_s=7)
    sync = resolve("sync", env, WATCHED)
    s = sync.settings
    assert (s.group_id, s.concurrency, s.max_in_flight) == ("shop.sync", 2, 50)
    assert (s.retry_attempts, s.retry_backoff_s, s.retry_backoff_max_s) == (9, 2, 7)
    assert (s.retry_jitter, s.handler_timeout_s, s.dead_letter_topic) == (0, 30, "cdc.sync.dlq")
    assert sync.rate is not None
    assert sync.rate.interval_s == pytest.approx(0.02)
    assert sync.replicas == 3
    default = resolve("default", env, WATCHED).settings
    assert (default.group_id, default.concurrency, default.retry_attempts) == ("shop", 8, 5)


def test_the_file_refuses_bad_workloads() -> None:
    for bad in ("workloads: {Sync: {}}", "workloads: {sync: {rate: {runs: 0}}}"):
        with pytest.raises(ConfigError):
            parse_watched_tables("tables: {public.orders: {}}\n" + bad)


def test_the_decorators_name_a_workload_and_override_attempts_and_time_limit() -> None:
    h = handler(workload="sync", attempts=2, timeout_s=0.5)
    assert (h.workload, h.attempts, h.timeout_s) == ("sync", 2, 0.5)
    assert handler().workload == "default"
    for bad in ({"workload": "Sync"}, {"attempts": 0}, {"timeout_s": -1}):
        with pytest.raises(ConfigError):
            handler(**bad)

    def on(event: Any, ctx: Context) -> None:
        pass

    assert handlers_of(on_event("placed", workload="mail")(on))[-1].workload == "mail"


def test_plan_runs_each_workload_with_its_own_handlers() -> None:
    quick, slow = handler(), handler(workload="sync")
    both = plan(Settings(), WATCHED, [quick, slow])
    assert [(w.name, hs) for w, hs in both] == [("default", [quick]), ("sync", [slow])]
    only = plan(Settings(), WATCHED, [quick, slow], ["sync"])
    assert [w.name for w, _ in only] == ["sync"]
    with pytest.raises(ConfigError, match="no workload 'synk'"):
        plan(Settings(), WATCHED, [quick, slow], ["synk"])


def test_check_flags_undeclared_and_unused_workloads() -> None:
    handlers = [handler(), handler(workload="sync"), handler(workload="mail")]
    about = {f.subject: f.severity.value for f in workload_findings(handlers, WATCHED, "cdc.yaml")}
    assert about == {"workload mail": "error", "workload idle": "warning"}


def route(func: Any, **options: Any) -> Route:
    return Route(handlers_of(on_change("corpus.all_types", **options)(func))[-1])


def dispatcher(**options: Any) -> Dispatcher:
    return Dispatcher(Resources(Settings()), Backoff(3, 0.01, 0.01), **options)


def test_a_sync_handler_past_its_time_limit_is_left_running_and_retried() -> None:
    release = threading.Event()
    calls: list[int] = []
    abandoned: list[int] = []
    timed_out: list[str] = []

    def hangs_once(change: Change, ctx: Context) -> None:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            release.wait(10)

    d = dispatcher(timed_out=timed_out.append, abandoned=abandoned.append)
    r = route(hangs_once, timeout_s=0.2)
    assert d.limited(r.handler)
    started = time.monotonic()
    run = d.run(r, CHANGE)
    assert run.outcome is Outcome.DONE
    assert run.attempts == 2
    assert time.monotonic() - started < 2
    assert calls == [1, 2]
    assert timed_out == [r.name]
    assert abandoned == [1]
    release.set()  # the first call returns late: its thread comes back
    deadline = time.monotonic() + 5
    while abandoned[-1] != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert abandoned == [1, 0]


def test_a_late_call_cannot_commit_what_it_would_have(monkeypatch: pytest.MonkeyPatch) -> None:
    """The context of an attempt past its limit is fenced: its transaction rolls back."""
    fenced: list[BaseException | None] = []
    release = threading.Event()

    def slow(change: Change, ctx: Context) -> None:
        if ctx.attempt == 1:
            release.wait(10)
        fenced.append(ctx.fenced)

    d = dispatcher()
    run = d.run(route(slow, timeout_s=0.1, attempts=2), CHANGE)
    assert run.outcome is Outcome.DONE
    release.set()
    deadline = time.monotonic() + 5
    while len(fenced) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    late = [f for f in fenced if f is not None]
    assert len(fenced) == 2
    assert len(late) == 1
    assert "time limit of 0.1 s" in str(late[0])


def test_a_handler_that_never_returns_is_dead_lettered_after_its_attempts() -> None:
    forever = threading.Event()

    def hangs(change: Change, ctx: Context) -> None:
        forever.wait(30)

    d = dispatcher()
    run = d.run(route(hangs, timeout_s=0.05, attempts=3), CHANGE)
    assert run.outcome is Outcome.DEAD_LETTER
    assert run.attempts == 3
    assert "gave up after 3 attempts" in run.reason
    assert "time limit" in run.reason
    forever.set()


def test_an_async_handler_past_its_time_limit_is_cancelled() -> None:
    cancelled: list[int] = []

    async def sleepy(change: Change, ctx: Context) -> None:
        try:
            await asyncio.sleep(0 if ctx.attempt > 1 else 10)
        except asyncio.CancelledError:
            cancelled.append(ctx.attempt)
            raise

    d = dispatcher(timeout_s=0.1)  # the workload's limit
    try:
        run = d.run(route(sleepy), CHANGE)
    finally:
        d.close()
    assert run.outcome is Outcome.DONE
    assert run.attempts == 2
    assert cancelled == [1]


def test_timed_calls_reuse_their_threads() -> None:
    calls = TimedCalls()
    names = {calls.call(lambda: threading.current_thread().name, 1, "h") for _ in range(50)}
    assert names == {"cdc-timed"}
    assert threading.active_count() < 20
    with pytest.raises(ZeroDivisionError):
        calls.call(lambda: 1 / 0, 1, "h")


def test_the_rate_spaces_attempts_over_every_thread() -> None:
    pacer = Pacer(0.01)
    d = dispatcher(pacer=pacer)
    r = route(lambda change, ctx: None)
    starts: list[float] = []
    lock = threading.Lock()

    def many() -> None:
        for _ in range(25):
            d.run(r, CHANGE)
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=many) for _ in range(4)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - began
    assert len(starts) == 100
    assert 0.97 <= took <= 1.5  # 100 runs at 100/s: the first at once, the last at 0.99 s


def test_the_rate_hands_the_wait_to_a_worker_when_it_cannot_wait() -> None:
    d = dispatcher(pacer=Pacer(5))
    r = route(lambda change, ctx: None)
    assert d.try_run(r, CHANGE).outcome is Outcome.DONE  # the first starts at once
    later = d.try_run(r, CHANGE)
    assert isinstance(later, Later)
    assert later.paced
    assert 4 < later.delay <= 5


def test_jitter_draws_the_backoff_from_its_range() -> None:
    assert {Backoff(5, 1, 8, jitter=0).delay(3) for _ in range(20)} == {4}
    assert all(1 <= Backoff(5, 1, 8, jitter=0.75).delay(3) <= 4 for _ in range(50))


def test_one_endpoint_labels_every_series_with_its_workload() -> None:
    quick, slow = handler(), handler(workload="sync")
    settings = Settings(http_port=None, capture_check_interval_s=0)
    workloads = Workloads(settings, WATCHED, plan(settings, WATCHED, [quick, slow]))
    for runtime in workloads.runtimes:
        runtime.metrics.records.labels("public.orders", "c", "handled").inc(
            2 if runtime.workload == "sync" else 1
        )
    text = workloads.exposition().decode()
    assert text.count("# HELP cdc_records_total") == 1
    samples = {
        s.labels["workload"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "cdc_records_total"
    }
    assert samples == {"default": 1, "sync": 2}
    # What the process watches once: no workload label, once, whichever runtime watches.
    assert all(r.process_metrics is workloads.process for r in workloads.runtimes)
    workloads.process.capture_problems.labels("app", "task").set(1)
    capture = [
        s.labels
        for family in text_string_to_metric_families(workloads.exposition().decode())
        for s in family.samples
        if s.name == "cdc_capture_problems"
    ]
    assert capture == [{"connector": "app", "check": "task"}]
    assert [r.settings.group_id for r in workloads.runtimes] == ["cdc", "cdc.sync"]
    assert workloads.ready() == (
        False,
        "default: not fetching yet; sync: not fetching yet",
    )


def test_the_schedulers_counts_are_series_of_the_endpoint() -> None:
    from cdc.schedule.scheduler import Counts, CountsCollector

    quick = handler()
    settings = Settings(http_port=None, capture_check_interval_s=0)
    workloads = Workloads(settings, WATCHED, plan(settings, WATCHED, [quick]))
    counts = Counts(moved=3, fired={"nightly": 2}, leader=True)
    workloads.registry.register(CountsCollector(counts))
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for family in text_string_to_metric_families(workloads.exposition().decode())
        for s in family.samples
    }
    assert samples[("cdc_scheduler_leader", ())] == 1
    assert samples[("cdc_scheduler_delivered_total", ())] == 3
    assert samples[("cdc_schedule_fired_total", (("schedule", "nightly"),))] == 2
