"""Batch handlers on the consumer's stages, with a stand-in for the Kafka client and the
captured corpus: lists of at most ``batch`` changes, in key order, every change once; a
list that keeps failing is split down to the change that fails, and only that one is
dead-lettered; a record's offset moves once every handler of it (its own and its lists)
is done."""

from __future__ import annotations

from typing import Any

import pytest

from cdc import Change, Context, DeadLetter, on_change
from cdc.errors import ConfigError
from cdc.runtime import Runtime
from tests.unit.test_pipeline import corpus_messages, run


def test_a_batch_handler_gets_lists_in_key_order_and_offsets_move_after_them() -> None:
    lists: list[list[int]] = []

    @on_change("corpus.all_types", snapshot_reads=True, batch=4, max_wait_s=0.05)
    def sink(changes: list[Change], ctx: Context) -> None:
        lists.append([c.kafka.offset for c in changes])

    size = len(corpus_messages())
    _, kafka, handled = run([corpus_messages(i * size) for i in range(3)], sink, gap_s=0.02)
    assert lists
    assert all(1 <= len(offsets) <= 4 for offsets in lists)
    ran = [o for offsets in lists for o in offsets]
    assert ran == sorted(ran)  # one partition, lists in turn: fetch order throughout
    assert len(ran) == 9 * 3 == len(set(ran))
    assert len(handled) == size * 3
    assert sorted(h.offset for h in handled if h.runs) == ran
    assert kafka.stored[-1][2] == size * 3


def test_a_list_that_fails_is_split_and_only_the_failing_change_is_dead_lettered() -> None:
    poison: set[int] = set()
    calls: list[int] = []

    @on_change("corpus.all_types", snapshot_reads=True, batch=100, max_wait_s=0.05)
    def sink(changes: list[Change], ctx: Context) -> DeadLetter | None:
        calls.append(len(changes))
        if any(c.kafka.offset in poison for c in changes):
            return DeadLetter("refused by the sink")
        return None

    messages = corpus_messages()
    handled_ops = [m.offset() for m in messages if m.value() and b'"op":"t"' not in m.value()]
    poison.add(int(handled_ops[5] or 0))
    parked: list[tuple[int, str, dict[str, Any]]] = []

    def spy(runtime: Runtime) -> None:
        def park(msg: Any, reason: str, error: str, **kw: Any) -> None:
            parked.append((int(msg.offset()), reason, kw))

        runtime.parker.park = park  # type: ignore[method-assign]
        runtime.execute.batches._parker = runtime.parker

    _, kafka, handled = run([messages], sink, spy)
    assert [(o, r) for o, r, _ in parked] == [(min(poison), "refused by the sink")]
    assert parked[0][2]["handler"].endswith("sink")
    # The whole list, then halves down to the one: about 2 log2(n) calls, not n.
    assert calls[0] == 9
    assert len(calls) <= 2 * 4 + 1
    done = [h for h in handled if h.runs]
    assert sorted(h.offset for h in done) == sorted(o for o in handled_ops if o is not None)[:9]
    assert [h.offset for h in done if h.parked] == [min(poison)]
    assert kafka.stored[-1][2] == int(messages[-1].offset() or 0) + 1


def test_a_record_with_a_batch_handler_and_its_own_finishes_once_both_are_done() -> None:
    own: list[int] = []
    lists: list[int] = []

    @on_change("corpus.all_types", batch=3, max_wait_s=0.05)
    def sink(changes: list[Change], ctx: Context) -> None:
        lists.extend(c.kafka.offset for c in changes)

    @on_change("corpus.all_types")
    def each(change: Change, ctx: Context) -> None:
        own.append(change.kafka.offset)

    sink.__cdc_handlers__ += each.__cdc_handlers__  # type: ignore[attr-defined]
    messages = corpus_messages()
    runtime, kafka, handled = run([messages], sink)
    assert sorted(own) == sorted(lists)
    assert len(own) == 5
    both = [h for h in handled if h.runs]
    assert len(both) == 5
    assert all(len(h.runs) == 2 for h in both)
    assert len(handled) == len(messages)  # each record finished once
    value = runtime.metrics.registry.get_sample_value(
        "cdc_records_total", {"table": "corpus.all_types", "op": "u", "outcome": "handled"}
    )
    assert value == sum(1 for h in both if h.event.op.value == "u")  # type: ignore[union-attr]
    assert kafka.stored[-1][2] == int(messages[-1].offset() or 0) + 1


def test_batch_options_are_checked_when_declared() -> None:
    def sink(changes: list[Change], ctx: Context) -> None: ...

    with pytest.raises(ConfigError, match="positive number"):
        on_change("orders", batch=0)(sink)
    with pytest.raises(ConfigError, match="give batch= as well"):
        on_change("orders", max_wait_s=2.0)(sink)
    with pytest.raises(ConfigError, match="ledger=True"):
        on_change("orders", batch=10, ledger=True)(sink)
