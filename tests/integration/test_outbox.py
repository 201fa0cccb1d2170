"""Domain events through the outbox on the real stack: `emit` in the application's
transaction, Debezium's Outbox Event Router, and handlers by event type that chain a workflow
with follow-up emits. A rolled-back event never arrives; a committed one is handled once,
typed; a step that keeps failing is retried, then dead-lettered, while other aggregates go
on; a payload that does not fit its model is dead-lettered with the validation error; an
unknown type is skipped and counted; a replay once the step is fixed finishes the workflow."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

from cdc import Change, Context, DomainEvent, Retry, emit, on_event
from cdc.decoding import decoder_for
from cdc.routing import Router, handlers_of
from cdc.runtime import Runtime
from cdc.runtime.replay import DeadLetterTopic, replay
from cdc.tables.config import Encoding
from cdc.testing import RecordReader, RunningConsumer
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack

POISON = 2  # the order whose payment step always fails
RETRY_AFTER_S = 3.0
ATTEMPTS = 3


class Order(BaseModel):
    order_id: int
    total: float


@dataclass
class Shop:
    pipeline: Pipeline
    consumer: RunningConsumer
    steps: str  # the table the workflow writes: one row per step taken
    seen: list[Any]  # what the first handler was given
    fixed: list[bool]  # non-empty once the payment service takes the poisoned order
    router: Router

    def place(self, order_id: int, payload: Any = None, event_type: str = "order-placed") -> str:
        """The application's transaction: its own row and the event, together."""
        with self.pipeline.db.transaction():
            self.pipeline.db.execute(
                f"INSERT INTO {self.steps} VALUES (%s, 'app', now())", (order_id,)
            )
            event_id = emit(
                self.pipeline.db,
                "order",
                order_id,
                event_type,
                payload or Order(order_id=order_id, total=order_id * 10.0),
            )
        return str(event_id)

    def steps_of(self, order_id: int) -> list[str]:
        rows = self.pipeline.sql(
            f"SELECT step FROM {self.steps} WHERE order_id = %s ORDER BY at", (order_id,)
        )
        return [r[0] for r in rows]

    def when(self, order_id: int, step: str) -> float:
        rows = self.pipeline.sql(
            f"SELECT extract(epoch FROM at) FROM {self.steps} WHERE order_id = %s AND step = %s",
            (order_id, step),
        )
        return float(rows[0][0])


@pytest.fixture
def shop(pipeline: Pipeline) -> Iterator[Shop]:
    steps = pipeline.table("steps")
    pipeline.sql(f"CREATE TABLE {steps} (order_id int, step text, at timestamptz)")
    pipeline.write_file({}, outbox={})
    pipeline.apply()
    seen: list[Any] = []
    fixed: list[bool] = []

    def step(conn: Any, order: Order, name: str) -> None:
        conn.execute(
            f"INSERT INTO {steps} VALUES (%s, %s, clock_timestamp())", (order.order_id, name)
        )

    @on_event("order-placed", model=Order, ledger=True)
    def reserve(event: DomainEvent[Order], ctx: Context) -> None:
        seen.append(event)
        with ctx.connection() as conn:
            step(conn, event.payload, "reserved")
            ctx.emit(conn, "order", event.aggregate_id, "order-reserved", event.payload)

    @on_event("order-reserved", model=Order, ledger=True)
    async def pay(event: DomainEvent[Order], ctx: Context) -> None:
        if event.payload.order_id == POISON and not fixed:
            raise Retry("the payment service refuses this order", after=RETRY_AFTER_S)
        async with ctx.aconnection() as conn:
            await conn.execute(
                f"INSERT INTO {steps} VALUES (%s, 'paid', clock_timestamp())",
                (event.payload.order_id,),
            )
            await ctx.aemit(conn, "order", event.aggregate_id, "order-paid", event.payload)

    @on_event("order-paid", model=Order, ledger=True)
    def ship(event: DomainEvent[Order], ctx: Context) -> None:
        with ctx.connection() as conn:
            step(conn, event.payload, "shipped")

    router = Router([h for f in (reserve, pay, ship) for h in handlers_of(f)])
    settings = pipeline.stack.settings(
        watched_tables=pipeline.file,
        group_id=pipeline.id,
        retry_attempts=ATTEMPTS,
        retry_backoff_s=0.05,
        http_port=None,
    )
    with RunningConsumer(settings, pipeline.watched(), router) as consumer:
        yield Shop(pipeline, consumer, steps, seen, fixed, router)


def test_the_outbox_workflow(shop: Shop) -> None:
    p, consumer = shop.pipeline, shop.consumer
    topic = f"{p.outbox_prefix}.order"

    # Rolled back: the event goes with the transaction, whether the connection is in
    # autocommit (an explicit transaction) or not (emit first, then a rollback).
    with p.db.transaction(force_rollback=True):
        emit(p.db, "order", 99, "order-placed", Order(order_id=99, total=1))
    with psycopg.connect(p.settings.pg_conninfo(), password=p.stack.app_password) as conn:
        emit(conn, "order", 98, "order-placed", Order(order_id=98, total=1))
        conn.execute(f"INSERT INTO {shop.steps} VALUES (98, 'app', now())")
        conn.rollback()

    # The poisoned order first, then a good one right behind it on the same topic.
    shop.place(POISON)
    placed = shop.place(1)
    # A payload its model refuses, and a type no handler takes.
    bad = shop.place(3, {"order_id": "three", "total": 30})
    unknown = shop.place(4, event_type="order-audited")

    # The good order's chain of three events runs to the end...
    consumer.wait_for_event("order-paid", lambda e: e.aggregate_id == "1", timeout=120)
    assert shop.steps_of(1) == ["app", "reserved", "paid", "shipped"]
    # ...while the poisoned order still waits for its payment step to be retried.
    assert shop.steps_of(POISON) == ["app", "reserved"]
    parked = consumer.wait_for_event(
        "order-reserved", lambda e: e.aggregate_id == str(POISON), timeout=120
    )
    assert shop.steps_of(POISON) == ["app", "reserved"]
    (run,) = parked.runs
    assert run.outcome.value == "dead_letter"
    assert run.attempts == ATTEMPTS
    assert "the payment service refuses this order" in run.reason
    assert parked.parked

    # Handled once, typed.
    first = [
        h for h in consumer.handled if isinstance(h.event, DomainEvent) and h.event.id == placed
    ]
    assert len(first) == 1
    assert [r.outcome.value for r in first[0].runs] == ["done"]
    typed = [e for e in shop.seen if e.id == placed]
    assert len(typed) == 1
    assert typed[0].payload == Order(order_id=1, total=10.0)

    # The payload that does not fit: dead-lettered with the validation error, no call made.
    refused = consumer.wait_for_event("order-placed", lambda e: e.id == bad)
    (run,) = refused.runs
    assert run.outcome.value == "dead_letter"
    assert "payload does not fit Order" in run.reason
    assert "order_id" in run.reason
    assert shop.steps_of(3) == ["app"]

    # The unknown type: skipped and counted.
    skipped = consumer.wait_for_event("order-audited", lambda e: e.id == unknown)
    assert skipped.runs == ()
    assert skipped.parked == ()
    registry = consumer.runtime.metrics.registry
    labels = {"table": "public.outbox", "op": "order-audited", "outcome": "unrouted"}
    assert registry.get_sample_value("cdc_records_total", labels) == 1

    # Both dead letters are in the dead-letter topic, with where they came from and why.
    with RecordReader(p.stack.kafka_bootstrap, [f"{p.id}.dlq"]) as reader:
        letters = reader.wait(lambda rs: len(rs) >= 2, timeout=30)
    reasons = {
        dict(m.headers() or [])["cdc.dlq.handler"].decode(): dict(m.headers() or [])
        for m in letters
    }
    pay, reserve = (f"{__name__}.shop.<locals>.{name}" for name in ("pay", "reserve"))
    assert set(reasons) == {pay, reserve}
    assert reasons[reserve]["cdc.dlq.topic"] == topic.encode()
    assert b"payload does not fit Order" in reasons[reserve]["cdc.dlq.reason"]
    assert reasons[pay]["cdc.dlq.attempts"] == str(ATTEMPTS).encode()
    # Not blocked: the good order, placed after the poisoned one on the same topic, had
    # shipped before the poisoned one ran out of attempts.
    poison_letter = next(
        m for m in letters if dict(m.headers() or [])["cdc.dlq.handler"] == pay.encode()
    )
    assert shop.when(1, "shipped") * 1000 < poison_letter.timestamp()[1]

    # Every event that reached Kafka, each handled once; nothing of the rolled-back
    # transactions, which were written to the log before all of them.
    events = [h.event for h in consumer.handled if isinstance(h.event, DomainEvent)]
    assert len(events) == 7  # 2 + 3 for the two orders' chains, the refused and the unknown
    assert len({e.id for e in events}) == 7
    assert {e.aggregate_id for e in events} == {"1", str(POISON), "3", "4"}
    assert all(e.kafka.topic == topic for e in events)
    assert p.sql("SELECT count(*) FROM public.outbox") == [(0,)]  # insert-then-delete

    # Once fixed, a replay of the dead-letter topic takes the poisoned order's payment step
    # again, and its workflow goes on to the end; the refused payload is parked again.
    shop.fixed.append(True)
    replayer = Runtime(consumer.settings, consumer.watched, shop.router)
    try:
        with DeadLetterTopic(consumer.settings, f"{p.id}.dlq", "replay") as dlq:
            assert replay(replayer, dlq) == {"handled": 1, "parked_again": 1}
    finally:
        replayer.close()
    consumer.wait_for_event("order-paid", lambda e: e.aggregate_id == str(POISON))
    assert shop.steps_of(POISON) == ["app", "reserved", "paid", "shipped"]


def test_outbox_events_and_rows_in_avro(pipeline: Pipeline) -> None:
    """In Avro the connector keeps the rows' NULLs first, then routes the outbox: both
    transforms in one chain, each record as it should be."""
    table = pipeline.table("orders")
    pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, note text DEFAULT 'none')")
    pipeline.write_file({table: {}}, outbox={}, encoding=Encoding.AVRO.value)
    pipeline.apply()
    with pipeline.db.transaction():
        pipeline.db.execute(f"INSERT INTO {table} VALUES (1, NULL)")
        event_id = emit(pipeline.db, "order", 1, "order-placed", Order(order_id=1, total=10))
    topics = [pipeline.topic(table), f"{pipeline.outbox_prefix}.order"]
    decoder = decoder_for(Encoding.AVRO, pipeline.stack.registry_url)
    with RecordReader(pipeline.stack.kafka_bootstrap, topics) as reader:
        row, event = sorted(
            reader.wait(lambda r: len(r) >= 2), key=lambda m: topics.index(m.topic())
        )
    change = decoder.decode_message(row)
    assert isinstance(change, Change)
    assert change.after == {"id": 1, "note": None}
    domain = decoder.decode_message(event, outbox=True)
    assert isinstance(domain, DomainEvent)
    assert (domain.id, domain.type, domain.aggregate_id) == (str(event_id), "order-placed", "1")
    assert Order.model_validate(domain.payload) == Order(order_id=1, total=10)
