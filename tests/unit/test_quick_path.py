"""Quick sync handlers on the consumer thread: what `Executor._quick` skips building changes
nothing a handler, the observer, the metrics or the offsets see."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from cdc import Change, Context, Retry, on_change
from cdc.routing import handlers_of
from cdc.runtime.runs import Outcome
from tests.unit.test_pipeline import DATA, corpus_messages, count, run

SIZE = len(corpus_messages())
ROUNDS = 30  # enough for the handlers to prove quick on the consumer thread, even when busy


@pytest.fixture(autouse=True)
def info() -> Iterator[None]:
    """Logs at INFO, as `cdc run` has them: at DEBUG each run logs, and takes the long way."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    yield
    structlog.reset_defaults()


def name(func: Any) -> str:
    return handlers_of(func)[0].name


def fetches() -> list[list[Any]]:
    return [corpus_messages(i * SIZE) for i in range(ROUNDS)]


def test_a_handler_after_a_done_one_retries_without_running_the_first_again() -> None:
    calls: Counter[tuple[str, int]] = Counter()
    retried: set[int] = set()

    @on_change("corpus.all_types")
    def first(change: Change, ctx: Context) -> None:
        calls["first", change.kafka.offset] += 1

    @on_change("corpus.all_types")
    def second(change: Change, ctx: Context) -> Retry | None:
        offset = change.kafka.offset
        calls["second", offset] += 1
        # Once each, once both run here; not in the last rounds: the consumer stops after
        # the last fetch, and a retry still waiting then is read again, not finished.
        if SIZE * 5 <= offset < SIZE * (ROUNDS - 2) and offset not in retried:
            retried.add(offset)
            return Retry("once", after=0)
        return None

    both = SimpleNamespace(__cdc_handlers__=handlers_of(first) + handlers_of(second))
    runtime, kafka, handled = run(fetches(), both, gap_s=0.01)
    assert len(retried) == 5 * (ROUNDS - 7)
    for h in handled:
        if h.offset in retried:
            assert calls["first", h.offset] == 1
            assert calls["second", h.offset] == 2
            assert [(r.handler, r.outcome, r.attempts) for r in h.runs] == [
                (name(first), Outcome.DONE, 1),
                (name(second), Outcome.DONE, 2),
            ]
    assert count(runtime, "u", "handled") == 3 * ROUNDS
    assert kafka.stored[-1] == (DATA, 0, SIZE * ROUNDS)


def test_without_an_observer_records_are_counted_timed_and_committed() -> None:
    seen: list[int] = []

    @on_change("corpus.all_types")
    def changed(change: Change, ctx: Context) -> None:
        seen.append(change.kafka.offset)

    runtime, kafka, _ = run(fetches(), changed, lambda r: setattr(r.execute, "_observer", None))
    assert len(seen) == 5 * ROUNDS  # a create, three updates, a delete per round
    assert count(runtime, "u", "handled") == 3 * ROUNDS
    assert count(runtime, "c", "handled") == ROUNDS
    registry = runtime.metrics.registry
    labels = {"handler": name(changed), "table": "corpus.all_types", "outcome": "done"}
    assert registry.get_sample_value("cdc_handler_duration_seconds_count", labels) == 5 * ROUNDS
    table = {"table": "corpus.all_types"}
    lag = registry.get_sample_value("cdc_end_to_end_lag_seconds_count", table)
    assert lag == 5 * ROUNDS
    assert kafka.stored[-1] == (DATA, 0, SIZE * ROUNDS)


def test_a_handler_that_logs_and_publishes_on_the_quick_path() -> None:
    @on_change("corpus.all_types")
    def changed(change: Change, ctx: Context) -> None:
        ctx.log.info("seen", n=1)
        assert ctx.log is ctx.log  # made once
        ctx.publish("elsewhere", {"id": 1})

    sent: list[object] = []
    _, kafka, handled = run(fetches(), changed, lambda r: setattr(r.resources, "send", sent.extend))
    changes = [h for h in handled if h.runs]
    assert len(changes) == 5 * ROUNDS
    assert all(h.runs[0].outcome is Outcome.DONE for h in changes)
    assert all(len(h.runs[0].published) == 1 for h in changes)
    assert len(sent) == 5 * ROUNDS
    assert kafka.stored[-1] == (DATA, 0, SIZE * ROUNDS)


def test_a_slow_run_here_sends_the_handler_back_to_the_workers() -> None:
    threads: dict[int, str] = {}
    slow = SIZE * (ROUNDS - 4) + 4  # late: a busy machine slows the proving down

    @on_change("corpus.all_types")
    def changed(change: Change, ctx: Context) -> None:
        threads[change.kafka.offset] = threading.current_thread().name
        if change.kafka.offset == slow:
            time.sleep(0.005)

    run(fetches(), changed, gap_s=0.01)
    here = threading.current_thread().name
    assert threads[slow] == here  # proven quick by then
    after = sorted(o for o in threads if o > slow)
    assert threads[after[0]].startswith("cdc-worker")


def test_a_fault_of_ours_on_the_quick_path_parks_the_record_and_goes_on() -> None:
    parked: list[tuple[int, str, str]] = []
    faulty = SIZE * 6 + 5  # an update of the seventh round

    @on_change("corpus.all_types")
    def changed(change: Change, ctx: Context) -> None:
        pass

    def ready(runtime: Any) -> None:
        first = runtime.dispatcher.first

        def failing(route: Any, event: Any) -> Any:
            if event.kafka.offset == faulty:
                raise RuntimeError("ours")
            return first(route, event)

        runtime.dispatcher.first = failing
        runtime.parker.park = lambda msg, reason, error, **_: parked.append(
            (msg.offset(), reason, error)
        )

    _, kafka, handled = run(fetches(), changed, ready)
    assert parked == [(faulty, "RuntimeError: ours", "InternalError")]
    (h,) = [h for h in handled if h.offset == faulty]
    assert h.parked == ("ours",)
    assert kafka.stored[-1] == (DATA, 0, SIZE * ROUNDS)
