"""The consumer's stages on a stand-in for the Kafka client, with the captured corpus: a
fetch goes down the stages once; what no handler takes is dropped before decoding and
counted; handlers see a key's changes in order; offsets move only past finished records."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from confluent_kafka import Message, TopicPartition

from cdc import Change, Context, on_change
from cdc.routing import Router, handlers_of
from cdc.runtime import Handled, Runtime
from cdc.runtime.control import Order
from cdc.settings import Settings
from cdc.tables.config import parse_watched_tables
from tests.corpus.load import DATA, decoder, records

WATCHED = parse_watched_tables("connector: {topic_prefix: corpus}\ntables: {corpus.all_types: {}}")
SETTINGS = Settings(http_port=None, capture_check_interval_s=0, ledger_prune_interval_s=0)


def corpus_messages(first: int = 0) -> list[Message]:
    """The data topic's records, a tombstone among them, as the client hands them over
    (numbered from ``first``)."""
    return [
        Message(
            topic=r.kafka.topic,
            partition=r.kafka.partition,
            offset=first + r.kafka.offset,
            key=r.key,
            value=r.value,
            headers=list(r.kafka.headers),
            timestamp=(1, r.kafka.timestamp_ms or 0),
        )
        for r in records("json")
        if r.kafka.topic == DATA
    ]


class Kafka:
    """What `Runtime.run()` asks of the client: ``batches`` in turn, then nothing."""

    def __init__(
        self,
        batches: list[list[Message]],
        done: Callable[[], None],
        gap_s: float = 0.0,
        idle_s: float = 0.0,
    ) -> None:
        self.batches = batches
        self.gap_s = gap_s  # between batches: the time records take to arrive
        self.idle_s = idle_s  # after them: how long nothing comes before the run stops
        self.done = done
        self.stored: list[tuple[str, int, int]] = []
        self.store_calls = 0

    def subscribe(self, topics: list[str], on_assign: Callable[..., None], **_: Any) -> None:
        parts = {(str(m.topic()), int(m.partition() or 0)) for b in self.batches for m in b}
        on_assign(self, [TopicPartition(t, p) for t, p in sorted(parts)])

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        if not self.batches:
            if self.idle_s > 0:
                waited = min(timeout, self.idle_s) or 0.01
                time.sleep(waited)
                self.idle_s -= waited
                return []
            self.done()
            return []
        time.sleep(self.gap_s)
        batch, rest = self.batches[0][:num_messages], self.batches[0][num_messages:]
        self.batches[0:1] = [rest] if rest else []
        return batch

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.store_calls += 1
        self.stored += [(tp.topic, tp.partition, tp.offset) for tp in offsets]

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *_, **__: None  # pause, resume, commit, close


class CountingDecoder:
    """The corpus's decoder, counting the records it was asked to decode."""

    def __init__(self) -> None:
        self.inner = decoder("json")
        self.decoded: list[int] = []

    def decode_message(self, msg: Message, *, outbox: bool = False) -> Any:
        self.decoded.append(int(msg.offset() or 0))
        return self.inner.decode_message(msg, outbox=outbox)

    def peek_op(self, value: bytes) -> str | None:
        return self.inner.peek_op(value)


def run(
    batches: list[list[Message]],
    func: Any,
    ready: Callable[[Runtime], None] = lambda _: None,
    gap_s: float = 0.0,
    idle_s: float = 0.0,
) -> tuple[Runtime, Kafka, list[Handled]]:
    handled: list[Handled] = []
    runtime: Runtime

    class Fake(Runtime):
        def _consumer(self) -> Any:
            return kafka

    dec = CountingDecoder()
    funcs = func if isinstance(func, list) else [func]
    router = Router([h for f in funcs for h in handlers_of(f)], WATCHED.tables)
    runtime = Fake(SETTINGS, WATCHED, router, decoder=dec, observer=handled.append)  # type: ignore[arg-type]
    kafka = Kafka(batches, runtime.stop, gap_s, idle_s)
    runtime.tail = runtime.control_tail = None  # no dead-letter or control topic to read
    ready(runtime)
    runtime.run()
    return runtime, kafka, handled


def count(runtime: Runtime, op: str, outcome: str) -> float | None:
    return runtime.metrics.registry.get_sample_value(
        "cdc_records_total", {"table": "corpus.all_types", "op": op, "outcome": outcome}
    )


def test_a_batch_goes_down_the_stages_and_its_offsets_are_stored_once() -> None:
    seen: list[str] = []

    @on_change("corpus.all_types")
    def changed(change: Change, ctx: Context) -> None:
        seen.append(change.op.value)  # rows of different keys: in any order

    messages = corpus_messages()
    runtime, kafka, handled = run([messages], changed)
    dec = runtime.decoder
    assert isinstance(dec, CountingDecoder)
    ops = [m.value() and dec.peek_op(m.value()) for m in messages]  # type: ignore[arg-type]
    # Snapshot reads are dropped before decoding; every other record is decoded once (the
    # tombstone: its key).
    assert sorted(dec.decoded) == [
        int(m.offset() or 0) for m, op in zip(messages, ops, strict=True) if op != "r"
    ]
    assert sorted(seen) == sorted(op for op in ops if op in ("c", "u", "d"))
    assert count(runtime, "r", "held_back") == ops.count("r")
    assert count(runtime, "", "held_back") == 1  # the tombstone
    assert count(runtime, "t", "held_back") == 1  # no handler takes truncates
    assert count(runtime, "u", "handled") == ops.count("u")
    # Every record finished, each once.
    assert sorted(h.offset for h in handled) == [m.offset() for m in messages]
    assert [h.read_of for h in handled if h.event is None] == ["corpus.all_types"] * 4
    # The last stored position is one past the batch: stored after the batch (once for all
    # of its records) and at shutdown (after the workers' records), never record by record.
    last = messages[-1]
    assert kafka.stored[-1] == (DATA, last.partition(), int(last.offset() or 0) + 1)
    assert kafka.store_calls <= 2


def test_records_of_a_key_run_in_order_across_batches_and_workers() -> None:
    seen: dict[str, list[int]] = {}

    @on_change("corpus.all_types", snapshot_reads=True)
    def changed(change: Change, ctx: Context) -> None:
        seen.setdefault(repr(change.key), []).append(change.kafka.offset)

    messages = corpus_messages()
    # Several fetches of one record or two: the handler starts on the workers (unproven).
    _, kafka, handled = run([messages[i : i + 2] for i in range(0, len(messages), 2)], changed)
    # Each key's changes in the order fetched, none missing.
    assert all(offsets == sorted(offsets) for offsets in seen.values())
    ran = sorted(o for offsets in seen.values() for o in offsets)
    assert ran == [h.offset for h in sorted(handled) if h.runs]
    assert len(ran) == 9  # 4 reads, 5 changes: not the truncate, not the tombstone
    assert sorted(h.offset for h in handled) == sorted(m.offset() for m in messages)
    assert kafka.stored[-1][2] == int(messages[-1].offset() or 0) + 1


def test_keys_behind_a_handler_that_hangs_run_while_it_hangs() -> None:
    messages = corpus_messages()
    first = messages[0]
    ends: dict[int, float] = {}

    @on_change("corpus.all_types", snapshot_reads=True)
    def changed(change: Change, ctx: Context) -> None:
        if change.kafka.offset == first.offset():
            time.sleep(2)  # the fetch's first task turns slow after its thread was woken
        if change.kafka.key != first.key() or change.kafka.offset == first.offset():
            ends[change.kafka.offset] = time.monotonic()

    # One fetch, then nothing: no later fetch's tasks wake the threads.
    run([messages], changed, idle_s=3.0)
    hung = ends.pop(int(first.offset() or 0))
    assert ends
    assert all(end < hung for end in ends.values())


def test_a_paused_handler_waits_and_runs_in_key_order_once_resumed() -> None:
    messages = corpus_messages()
    seen: dict[str, list[tuple[str, int]]] = {"paused": [], "other": []}
    at_resume: list[list[tuple[str, int, int]]] = []  # the offsets stored by then
    ran_by_then: list[int] = []

    @on_change("corpus.all_types", snapshot_reads=True)
    def paused(change: Change, ctx: Context) -> None:
        seen["paused"].append((repr(change.key), change.kafka.offset))

    @on_change("corpus.all_types", snapshot_reads=True)
    def other(change: Change, ctx: Context) -> None:
        seen["other"].append((repr(change.key), change.kafka.offset))

    def ready(runtime: Runtime) -> None:
        name = handlers_of(paused)[0].name
        runtime.controls.fold(f"pause/default/{name}", Order("a bad deploy").encode())

        def resume() -> None:  # what an operator's `cdc resume` comes to
            at_resume.append(list(kafka_of(runtime).stored))
            ran_by_then.extend(len(v) for v in seen.values())
            runtime.controls.fold(f"pause/default/{name}", None)

        threading.Timer(1.0, resume).start()

    def kafka_of(runtime: Runtime) -> Kafka:
        return cast(Kafka, runtime._consumer())

    runtime, kafka, handled = run([messages], [paused, other], ready, idle_s=2.0)
    first = int(messages[0].offset() or 0)
    # While paused: the other handler ran every change, the paused one none, and no
    # offset moved past the first record (it waited for the paused handler).
    assert len(at_resume) == 1
    assert all(offset <= first for _, _, offset in at_resume[0])
    assert ran_by_then == [0, 9]
    # Resumed: each change once, a key's in the order fetched; every record finished.
    assert sorted(o for _, o in seen["paused"]) == sorted(o for _, o in seen["other"])
    for key in {k for k, _ in seen["paused"]}:
        offsets = [o for k, o in seen["paused"] if k == key]
        assert offsets == sorted(offsets)
    assert sorted(h.offset for h in handled) == sorted(m.offset() for m in messages)
    assert kafka.stored[-1][2] == int(messages[-1].offset() or 0) + 1
    assert runtime.execute.paused.held == 0


def test_a_resume_read_while_a_fetch_runs_waits_for_the_next_so_keys_keep_their_order() -> None:
    first, second = corpus_messages(), corpus_messages(100)  # the same keys, later changes
    seen: list[tuple[str, int]] = []

    @on_change("corpus.all_types", snapshot_reads=True)
    def paused(change: Change, ctx: Context) -> None:
        seen.append((repr(change.key), change.kafka.offset))

    @on_change("corpus.all_types", snapshot_reads=True)
    def other(change: Change, ctx: Context) -> None:
        pass

    def ready(runtime: Runtime) -> None:
        key = f"pause/default/{handlers_of(paused)[0].name}"
        runtime.controls.fold(key, Order("a bad deploy").encode())
        execute = runtime.execute
        resume, batch = execute.resume, execute.batch

        def resumed_meanwhile() -> None:  # the tail folds `cdc resume` as the fetch starts
            resume()
            runtime.controls.fold(key, None)
            execute.resume = resume  # type: ignore[method-assign]

        def second_fetch(items: Any, works: Any) -> None:
            if items and items[0].offset >= 100:
                execute.resume = resumed_meanwhile  # type: ignore[method-assign]
            batch(items, works)

        execute.batch = second_fetch  # type: ignore[method-assign]

    run([first, second], [paused, other], ready, idle_s=1.0)
    assert len(seen) == 18
    for key in {k for k, _ in seen}:
        offsets = [o for k, o in seen if k == key]
        assert offsets == sorted(offsets), (key, offsets)


def test_records_a_handlers_rewind_reads_again_run_that_handler_alone() -> None:
    messages = corpus_messages()
    until = int(messages[5].offset() or 0)
    seen: dict[str, list[int]] = {"rewound": [], "other": []}

    @on_change("corpus.all_types", snapshot_reads=True)
    def rewound(change: Change, ctx: Context) -> None:
        seen["rewound"].append(change.kafka.offset)

    @on_change("corpus.all_types", snapshot_reads=True)
    def other(change: Change, ctx: Context) -> None:
        seen["other"].append(change.kafka.offset)

    def ready(runtime: Runtime) -> None:
        mark = {"handler": handlers_of(rewound)[0].name, "to": 0, "until": until}
        key = f"rewound/default/r1/{messages[0].topic()}/{messages[0].partition()}"
        runtime.controls.fold(key, json.dumps(mark).encode())

    _, kafka, handled = run([messages], [rewound, other], ready)
    assert len(seen["rewound"]) == 9  # 4 reads, 5 changes
    assert seen["other"]
    assert all(offset >= until for offset in seen["other"])
    assert sorted(h.offset for h in handled if h.runs) == sorted(seen["rewound"])
    assert kafka.stored[-1][2] == int(messages[-1].offset() or 0) + 1


def test_quick_coroutine_handlers_run_together_on_the_loop_in_key_order() -> None:
    seen: dict[str, list[int]] = {}

    @on_change("corpus.all_types", snapshot_reads=True)
    async def changed(change: Change, ctx: Context) -> None:
        seen.setdefault(repr(change.key), []).append(change.kafka.offset)

    together: list[int] = []

    def spy(runtime: Runtime) -> None:
        dispatcher = runtime.dispatcher
        try_run_all = dispatcher.try_run_all

        def counted(runs: Any) -> Any:
            together.append(len(runs))
            return try_run_all(runs)

        dispatcher.try_run_all = counted  # type: ignore[method-assign]

    size = len(corpus_messages())
    n = 30  # enough runs to prove it quick, even on a busy machine
    _, kafka, handled = run([corpus_messages(i * size) for i in range(n)], changed, spy, 0.02)
    # Unproven, the handler starts on the workers; once quick, a batch's runs go together.
    assert together
    assert max(together) > 1
    assert all(offsets == sorted(offsets) for offsets in seen.values())
    assert sum(len(offsets) for offsets in seen.values()) == 9 * n
    assert len(handled) == size * n
    assert kafka.stored[-1][2] == size * n
