"""Operators' orders as the control topic carries them: pauses per handler or workload,
resumes as tombstones, skips per record; a skipped record is dead-lettered unrun."""

from __future__ import annotations

import json

from cdc import Change, Context, on_change
from cdc.routing import Route, handlers_of
from cdc.runtime import Dispatcher, Outcome, Resources
from cdc.runtime.control import EVERY, Controls, Order, Skipped, pause_key, skip_key
from cdc.runtime.rewind import Rewind, rewind_key, rewound_key
from cdc.settings import Settings
from cdc.tables.limits import RecordLimits
from tests.corpus.load import first_insert

ORDER = Order("a bad deploy", "ops@host", "2026-12-07T05:00:00+00:00").encode()


def test_a_pause_holds_until_its_tombstone_and_other_workloads_are_left_alone() -> None:
    controls = Controls("sync")
    controls.fold(pause_key("sync", "app.index"), ORDER)
    controls.fold(pause_key("default", "app.mail"), ORDER)  # another workload's
    assert controls.is_paused("app.index")
    assert not controls.is_paused("app.mail")
    assert controls.paused["app.index"].reason == "a bad deploy"
    controls.fold(pause_key("sync", "app.index"), None)
    assert not controls.is_paused("app.index")
    controls.fold(pause_key("sync", None), ORDER)  # the whole workload
    assert controls.is_paused("app.index")
    assert controls.is_paused("app.anything")
    assert controls.version == 3


def test_a_skip_names_one_record_for_one_handler_or_all() -> None:
    controls = Controls("default")
    controls.fold(skip_key("default", "t.public.a", 2, 41, "app.mail"), ORDER)
    controls.fold(skip_key("default", "t.public.a", 2, 42, None), ORDER)
    assert controls.skipped("app.mail", ("t.public.a", 2, 41)) is not None
    assert controls.skipped("app.index", ("t.public.a", 2, 41)) is None
    assert controls.skipped("app.index", ("t.public.a", 2, 42)) is not None
    assert controls.skipped("app.index", ("t.public.a", 1, 42)) is None
    assert set(controls.skips[("t.public.a", 2, 42)]) == {EVERY}


def test_a_skipped_record_is_dead_lettered_without_a_call_and_other_records_run() -> None:
    calls: list[int] = []

    @on_change("corpus.all_types")
    def handler(change: Change, ctx: Context) -> None:
        calls.append(change.kafka.offset)

    route = Route(handlers_of(handler)[-1], snapshot_reads=False)
    change = first_insert()
    kafka = change.kafka
    controls = Controls("default")
    dispatcher = Dispatcher(Resources(Settings()), controls=controls)
    controls.fold(skip_key("default", kafka.topic, kafka.partition, kafka.offset + 1, None), ORDER)
    assert dispatcher.run(route, change).outcome is Outcome.DONE
    controls.fold(skip_key("default", kafka.topic, kafka.partition, kafka.offset, None), ORDER)
    run = dispatcher.run(route, change)
    assert run.outcome is Outcome.DEAD_LETTER
    assert isinstance(run.error, Skipped)
    assert run.reason == (
        "skipped by an operator: a bad deploy (ops@host, 2026-12-07T05:00:00+00:00)"
    )
    assert calls == [kafka.offset]


def test_a_rewind_is_pending_until_marked_per_partition_and_a_handlers_has_a_window() -> None:
    controls = Controls("sync")
    rewind = Rewind("r1", "app.index", 1_700_000_000_000, None, "reindex", "ops@host", "now")
    controls.fold(rewind_key("sync", "app.index"), rewind.encode())
    assert controls.rewinds.orders["app.index"] == rewind
    assert controls.rewinds.pending("t.public.a", 0) == [rewind]
    mark = json.dumps({"handler": "app.index", "to": 3, "until": 10}).encode()
    controls.fold(rewound_key("sync", "r1", "t.public.a", 0), mark)
    assert controls.rewinds.pending("t.public.a", 0) == []
    assert controls.rewinds.pending("t.public.a", 1) == [rewind]
    # Re-read below where the partition was: that handler alone; from there on, all.
    assert controls.rewinds.only("t.public.a", 0, 9) == "app.index"
    assert controls.rewinds.only("t.public.a", 0, 10) is None
    assert controls.rewinds.only("t.public.a", 1, 5) is None
    workload = Rewind("r2", EVERY, None, 0, "replay all")
    controls.fold(rewind_key("sync", None), workload.encode())
    controls.fold(rewound_key("sync", "r2", "t.public.a", 1), b'{"handler": "*", "to": 0}')
    assert controls.rewinds.only("t.public.a", 1, 0) is None  # a workload's: every handler
    controls.fold(rewound_key("sync", "r2", "t.public.a", 0), b'{"handler": "*", "to": 0}')
    assert controls.rewinds.only("t.public.a", 0, 9) is None  # the latest rewind decides


def test_a_record_no_order_reads_is_logged_not_fatal_and_a_skip_holds_no_key() -> None:
    from cdc.runtime.control import ControlTail
    from cdc.runtime.dead_letter import Parked
    from cdc.runtime.dead_letter_tail import fold
    from cdc.runtime.held_keys import HeldKeys

    def parked(error: str) -> Parked:
        return Parked(0, 7, None, "t", 0, 3, "public.t", "app.h", error, "why", 1, b"k", b"v", ())

    controls = Controls("default")
    tail = ControlTail(Settings(), "app.control", controls, RecordLimits())
    for key, value in [
        (rewind_key("default", None), b"null"),
        (pause_key("default", None), b"[1]"),
        (rewound_key("default", "r1", "t", 0), b'{"handler": "app.h"}'),
        (pause_key("default", None), b"\xff"),
    ]:
        tail._fold(FakeMessage(key.encode(), value))  # logged, never raised
    held = HeldKeys()
    fold(held, parked(error="Skipped"))
    assert len(held) == 0
    fold(held, parked(error="DeadLetter"))
    assert len(held) == 1


class FakeMessage:
    def __init__(self, key: bytes, value: bytes) -> None:
        self._key, self._value = key, value

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def offset(self) -> int:
        return 0
