"""Handlers of whole transactions on the consumer's stages, with a stand-in for the Kafka
client and the captured corpus (its connector sent transaction metadata): each transaction
runs once all of it is in, whichever topic comes first, in the order of the ENDs; offsets
move past a transaction's changes, and its END, only once its handler is done."""

from __future__ import annotations

import pytest
from confluent_kafka import Message, TopicPartition

from cdc import Change, Changes, Context, on_transaction
from cdc.errors import ConfigError
from cdc.events import Kind
from cdc.handler_check import handler_findings
from cdc.routing import Router, handlers_of
from cdc.runtime.fetch import Fetcher
from cdc.runtime.metrics import Metrics
from cdc.runtime.offsets import Offsets
from cdc.runtime.work import PartitionWork
from cdc.tables.config import parse_watched_tables
from cdc.transaction_check import transaction_findings
from tests.corpus.load import records
from tests.unit.test_pipeline import corpus_messages, run

TOPIC = "corpus.transaction"


def transaction_messages() -> list[Message]:
    return [
        Message(
            topic=r.kafka.topic,
            partition=r.kafka.partition,
            offset=r.kafka.offset,
            key=r.key,
            value=r.value,
            timestamp=(1, r.kafka.timestamp_ms or 0),
        )
        for r in records("json")
        if r.kafka.topic == TOPIC
    ]


@pytest.mark.parametrize("ends_first", [True, False])
def test_each_transaction_runs_whole_and_in_commit_order(ends_first: bool) -> None:
    calls: list[tuple[str | None, list[str]]] = []

    @on_transaction("corpus.all_types")
    def whole(changes: Changes, ctx: Context) -> None:
        calls.append((changes.transaction, [c.op.value for c in changes]))

    ends, data = transaction_messages(), corpus_messages()
    batches = [ends, data] if ends_first else [data, ends]
    _, kafka, handled = run(batches, whole)
    end_ids = [
        e.id
        for h in handled
        if h.topic == TOPIC and (e := h.event) is not None and getattr(e, "status", "") == "END"
    ]
    assert [t for t, _ in calls] == sorted(end_ids, key=lambda i: int(i.split(":")[0]))
    assert [ops for _, ops in calls] == [["c"], ["u"], ["u"], ["u"], ["d"], ["t"]]
    # Each change and each END finished once; the offsets moved past all of them.
    assert len(handled) == len(ends) + len(data)
    stored = {(t, p): o for t, p, o in kafka.stored}
    assert stored[TOPIC, 0] == int(ends[-1].offset() or 0) + 1
    assert stored[data[0].topic(), 0] == int(data[-1].offset() or 0) + 1


def test_a_transaction_waits_for_its_end() -> None:
    calls: list[Changes] = []

    @on_transaction("corpus.all_types")
    def whole(changes: Changes, ctx: Context) -> None:
        calls.append(changes)

    data = corpus_messages()
    _, kafka, handled = run([data], whole)
    assert calls == []
    # The snapshot reads before the first transaction are done; from its first change on,
    # nothing is: its END never came.
    first = min(int(m.offset() or 0) for m in data if b'"transaction":{' in (m.value() or b""))
    assert max(o for t, _, o in kafka.stored if t == data[0].topic()) == first
    assert all(not isinstance(h.event, Change) or h.event.transaction is None for h in handled)


def test_declared_routed_and_checked() -> None:
    def whole(changes: Changes, ctx: Context) -> None: ...

    with pytest.raises(ConfigError, match="name the tables"):
        on_transaction()(whole)
    with pytest.raises(ConfigError, match=r"schema\.table"):
        on_transaction("Orders")(whole)
    on_transaction("orders", "public.order_lines")(whole)
    (handler,) = handlers_of(whole)
    assert handler.tables == {"public.orders", "public.order_lines"}  # type: ignore[union-attr]
    router = Router([handler])
    assert router.handlers == [handler]  # listed once, routed from both tables
    # The ENDs come through, and so do truncates: the END counts them.
    assert router.gate.admits(Kind.TRANSACTION, "")
    assert router.gate.admits(Kind.TRUNCATE, "public.orders")

    watched = parse_watched_tables("connector: {topic_prefix: shop}\ntables: {public.orders: {}}")
    problems = [f.problem for f in transaction_findings([handler], watched, "cdc.yaml")]
    assert len(problems) == 2
    assert "sends no transaction metadata" in problems[0]
    assert "public.order_lines" in problems[1]
    assert "does not watch" in problems[1]
    watched = parse_watched_tables(
        "connector: {topic_prefix: shop, transaction_metadata: true}\n"
        "tables: {public.orders: {}, public.order_lines: {}}"
    )
    assert transaction_findings([handler], watched, "cdc.yaml") == []
    # Their tables have a handler: no "captured but no handler reacts" warning.
    assert handler_findings([], watched, None, "cdc.yaml", handler.tables) == []  # type: ignore[union-attr]


def test_a_transaction_is_known_by_its_id_on_every_delivery() -> None:
    change = next(c for c in _changes() if c.transaction is not None)
    assert Changes([change], "1679:31423224").idempotency_key == (
        f"transaction/{change.source.db}/1679:31423224"
    )
    assert Changes([change]).idempotency_key.startswith("batch/")


def _changes() -> list[Change]:
    from tests.corpus.load import decoder

    dec = decoder("json")
    return [
        e
        for m in corpus_messages()
        if m.value() is not None and isinstance(e := dec.decode_message(m), Change)
    ]


class Pauses:
    """What `Fetcher.flow` asks of the client: pause and resume, noted."""

    def __init__(self) -> None:
        self.paused: list[tuple[str, int]] = []

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused += [(tp.topic, tp.partition) for tp in tps]

    def resume(self, tps: list[TopicPartition]) -> None:
        pass


def test_records_held_for_a_transaction_do_not_pause_their_partition() -> None:
    """Pausing a partition whose records wait for the rest of their transaction could keep
    that rest (in the same partition, behind them) from ever being fetched."""
    offsets = Offsets(Metrics(), 1.0)
    fetcher = Fetcher({}, offsets, offsets._metrics, window=20, refused_timeout_s=60)
    for p in range(2):
        offsets.works["t", p] = work = PartitionWork("t", p)
        for o in range(15):
            work.add(o)
    kafka = Pauses()
    held = fetcher.flow(kafka, {("t", 0): 15})  # type: ignore[arg-type]
    assert held == 15
    assert kafka.paused == []
    assert fetcher.flow(kafka, {}) == 30  # type: ignore[arg-type]
    assert kafka.paused == [("t", 0), ("t", 1)]
    # Held beyond four windows, they count again: memory stays bounded.
    offsets.works["t", 0].paused = offsets.works["t", 1].paused = False
    kafka.paused = []
    fetcher.flow(kafka, {("t", 0): 15, ("t", 1): 66})  # type: ignore[arg-type]
    assert kafka.paused == [("t", 0), ("t", 1)]
