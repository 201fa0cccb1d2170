"""Debounced handlers: on the consumer's stages with a stand-in for the Kafka client and the
captured corpus, each key runs once with its latest change (a delete too), the others are
coalesced into that run and counted, and offsets move past all of them once it is done; a
dead-lettered run parks the latest change only. On the `Debounce` alone, with a clock of
the test's: a key closes once quiet, or at its longest wait while changes keep coming."""

from __future__ import annotations

import itertools
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import Message

import cdc.runtime.debounce
import tests.unit.test_pipeline as pipeline
from cdc import Change, Context, DeadLetter, on_change
from cdc.errors import ConfigError
from cdc.routing import Route, handlers_of
from cdc.runtime import Runtime
from cdc.runtime.debounce import Debounce
from cdc.runtime.groups import Join
from cdc.runtime.metrics import Metrics
from cdc.runtime.records import Handled, Taken
from cdc.runtime.runs import HandlerRun, Outcome
from cdc.runtime.tally import Tally
from cdc.runtime.work import PartitionWork, Task
from tests.unit.test_pipeline import corpus_messages, run

TABLE = "corpus.all_types"
# The corpus's data topic by key id: 1 r@0; 2 r@1 u@7; 3 r@2 d@8; 5 r@3; 4 c@4 u@5 u@6;
# a tombstone @9 and a truncate @10 (no key).
LATEST = {1: 0, 2: 7, 3: 8, 5: 3, 4: 6}


def coalesced(runtime: Runtime, handler: str) -> float | None:
    return runtime.metrics.registry.get_sample_value(
        "cdc_coalesced_total", {"handler": handler, "table": TABLE}
    )


def test_each_key_runs_once_with_its_latest_change_and_offsets_move_past_all() -> None:
    ran: list[tuple[int, int, str]] = []

    @on_change(TABLE, ops="cudt", snapshot_reads=True, debounce_s=0.05)
    def index(change: Change, ctx: Context) -> None:
        key = change.key["id"] if change.key else -1
        ran.append((key, change.kafka.offset, change.op.value))

    messages = corpus_messages()
    runtime, kafka, handled = run([messages], index)
    assert sorted((k, o) for k, o, _ in ran) == sorted([*LATEST.items(), (-1, 10)])
    assert "d" in {op for k, _, op in ran if k == 3}  # the delete ran
    assert len(ran) == 6
    # 2 + 1 + 1 superseded changes, each finished with its key's run, counted as coalesced.
    assert coalesced(runtime, index.__cdc_handlers__[0].name) == 4  # type: ignore[attr-defined]
    superseded = {4, 5, 1, 2}
    done = {h.offset: h for h in handled if h.runs}
    assert set(done) == superseded | set(LATEST.values()) | {10}
    assert all(done[o].runs[0].handler.endswith("index") for o in superseded)
    assert pipeline.count(runtime, "u", "handled") == 3
    assert kafka.stored[-1][2] == int(messages[-1].offset() or 0) + 1


def test_a_dead_lettered_run_parks_the_latest_change_and_finishes_those_it_replaced() -> None:
    @on_change(TABLE, debounce_s=0.05)
    def index(change: Change, ctx: Context) -> DeadLetter | None:
        return DeadLetter("the index refused it") if change.key == {"id": 4} else None

    parked: list[int] = []

    def spy(runtime: Runtime) -> None:
        def park(msg: Message, reason: str, error: str, **_: Any) -> None:
            parked.append(int(msg.offset() or 0))

        runtime.parker.park = park  # type: ignore[method-assign]
        runtime.execute.debounce._parker = runtime.parker

    messages = corpus_messages()
    runtime, kafka, handled = run([messages], index, spy)
    assert parked == [6]  # the latest of key 4; its create and first update coalesced (no reads)
    by_offset = {h.offset: h for h in handled if h.runs}
    assert by_offset[6].parked == ("the index refused it",)
    assert not by_offset[4].parked
    assert not by_offset[5].parked
    assert pipeline.count(runtime, "u", "dead_lettered") == 1
    assert coalesced(runtime, index.__cdc_handlers__[0].name) == 2  # type: ignore[attr-defined]
    assert kafka.stored[-1][2] == int(messages[-1].offset() or 0) + 1


def test_held_changes_filling_half_the_window_close_every_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[int] = []

    @on_change(TABLE, snapshot_reads=True, debounce_s=600)
    def index(change: Change, ctx: Context) -> None:
        ran.append(change.kafka.offset)

    # A window of 4: the first fetch (4 reads of 4 keys) fills it, so those keys close at
    # once; without that each key would wait for the consumer to stop, and run once: with
    # 0, 3, 6, 7 and 8.
    small = pipeline.SETTINGS.model_copy(update={"max_in_flight": 4})
    monkeypatch.setattr(pipeline, "SETTINGS", small)
    messages = corpus_messages()
    _, kafka, handled = run([messages], index)
    # Keys 2 and 3 ran with their reads (1, 2), closed early, and again with 7 and 8.
    assert {0, 1, 2, 3, 6, 7, 8} <= set(ran)
    assert len(ran) <= 9
    assert len([h for h in handled if h.runs]) == 9
    assert kafka.stored[-1][2] == int(messages[-1].offset() or 0) + 1


class Held:
    """A `Debounce` on a clock of the test's, with a stand-in for the dispatcher whose runs
    are done at once: what it submits, what the handler ran with, what it finished."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, debounce_s: float, max_wait_s: float | None = None
    ) -> None:
        @on_change(TABLE, debounce_s=debounce_s, max_wait_s=max_wait_s)
        def index(change: Change, ctx: Context) -> None: ...

        (handler,) = handlers_of(index)
        self.name = handler.name
        self.route = Route(handler)
        self.now = 100.0
        monkeypatch.setattr(cdc.runtime.debounce, "time", SimpleNamespace(monotonic=self.clock))
        self.tally = Tally(Metrics())
        self.tasks: list[Task] = []
        self.ran: list[int] = []  # the offset of each change the handler ran with
        self.finished: list[tuple[PartitionWork, int]] = []
        stop = threading.Event()
        self.debounce = Debounce(self, None, self.tally, self.tasks.extend, stop)  # type: ignore[arg-type]
        self.work = PartitionWork("t", 0)
        self.offsets = itertools.count()

    def clock(self) -> float:
        return self.now

    def run(self, route: Route, change: int, wait: Any, *, attempts: Any = None) -> HandlerRun:
        """The dispatcher's: the stand-in's changes are their offsets."""
        self.ran.append(change)
        return HandlerRun(route.name, Outcome.DONE)

    def add(self, key: bytes | None, work: PartitionWork | None = None, at: int = -1) -> None:
        work = work or self.work
        offset = next(self.offsets) if at < 0 else at
        msg = Message(topic="t", partition=0, offset=offset, key=key)
        taken = Taken(msg, ("t", 0, offset), offset, [self.route], TABLE, "u")  # type: ignore[arg-type]

        def finish(join: Join, handled: Handled) -> None:
            self.finished.append((join.work, handled.offset))

        self.debounce.add(self.route, Join(work, taken, 1, finish))

    def keys(self) -> list[bytes | None]:
        return [key[-1] for key, _ in self.tasks]  # type: ignore[index]

    def run_tasks(self) -> None:
        for _, task in self.tasks:
            task()

    def coalesced(self) -> float | None:
        return self.tally.metrics.registry.get_sample_value(
            "cdc_coalesced_total", {"handler": self.name, "table": TABLE}
        )


def test_a_key_closes_once_quiet_for_debounce_s(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Held(monkeypatch, 2.0)
    step = 1 / 128  # exact in binary: the deadlines compare as written
    for _ in range(100):  # a hundred quick updates of one row
        h.add(b"a")
        h.now += step
    h.add(b"b")  # at 100 + 100 step
    assert h.debounce.held == 101
    a_quiet = 100 + 99 * step + 2.0
    h.now = a_quiet - step
    h.debounce.due()
    assert h.tasks == []
    h.now = a_quiet
    h.debounce.due()
    assert h.keys() == [b"a"]
    assert h.debounce.held == 1
    h.now = a_quiet + step
    h.debounce.due()
    assert h.keys() == [b"a", b"b"]
    assert h.debounce.held == 0
    # Closed before their longest wait, they wait in the deadline queue without records.
    (lane,) = h.debounce._open.values()
    assert [len(k.joins) for k in lane.by_first] == [0, 0]
    h.run_tasks()
    assert h.ran == [99, 100]  # each key's latest
    assert sorted(o for _, o in h.finished) == list(range(101))
    assert h.coalesced() == 99


def test_a_key_that_never_goes_quiet_closes_at_max_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Held(monkeypatch, 1.0, max_wait_s=5.0)
    closed_at = []
    for _ in range(30):  # a change every 0.5 s for 15 s
        h.add(b"busy")
        h.debounce.due()
        if len(h.tasks) > len(closed_at):
            closed_at.append(h.now)
        h.now += 0.5
    # Closed each time its first held change waited 5 s: at 5 s, then 5 s after the next.
    assert closed_at == [105.0, 110.5]
    assert h.debounce.held == 30 - 11 - 11
    h.debounce.flush()
    assert len(h.tasks) == 3
    assert h.debounce.held == 0
    h.run_tasks()
    assert h.ran == [10, 21, 29]


def test_a_change_without_a_key_runs_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Held(monkeypatch, 2.0)
    h.add(None)
    h.add(None)
    assert h.keys() == [None, None]  # one task key: in partition order
    assert h.debounce.held == 0
    h.run_tasks()
    assert h.ran == [0, 1]


def test_changes_of_a_revoked_partition_are_not_finished_but_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Held(monkeypatch, 2.0)
    for _ in range(3):
        h.add(b"a")
    h.work.give_up()  # revoked while its key was held
    h.debounce.flush()
    h.run_tasks()
    assert h.ran == []
    assert h.finished == []  # the next owner reads them again from the committed position
    # Assigned back before the key closed: the records read again join the stale ones.
    again = PartitionWork("t", 0)
    for _ in range(3):
        h.add(b"a")
    h.work.give_up()
    for offset in range(3, 6):
        h.add(b"a", again, offset)
    h.debounce.flush()
    h.run_tasks()
    assert h.ran == [5]
    assert h.finished == [(again, 5), (again, 3), (again, 4)]
    assert h.coalesced() == 2


def test_debounce_options_are_checked_when_declared() -> None:
    def index(change: Change, ctx: Context) -> None: ...

    handler = handlers_of(on_change("posts", debounce_s=2.0)(index))[-1]
    assert (handler.debounce_s, handler.max_wait_s) == (2.0, 20.0)  # type: ignore[union-attr]
    handler = handlers_of(on_change("posts", debounce_s=2, max_wait_s=3, ledger=True)(index))[-1]
    assert (handler.max_wait_s, handler.ledger) == (3, True)  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="over 0"):
        on_change("posts", debounce_s=0)(index)
    with pytest.raises(ConfigError, match="number of seconds"):
        on_change("posts", debounce_s="2")(index)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not with batch="):
        on_change("posts", debounce_s=1.0, batch=10)(index)
    with pytest.raises(ConfigError, match="at least debounce_s"):
        on_change("posts", debounce_s=2.0, max_wait_s=1.0)(index)
    with pytest.raises(ConfigError, match="give batch= as well"):
        on_change("posts", max_wait_s=1.0)(index)
