"""A batch handler on the real stack: 1,000 changes written in bulk (`executemany`) into a
sink table whose CHECK constraint refuses one of them. The sink ends with the other 999;
exactly the refused change is in the dead-letter topic, byte for byte as captured, naming
the handler and the database's reason; each change reached a list once or more (the lists
the poison was in were tried again, halved); offsets moved past every change."""

from __future__ import annotations

import threading

import pytest

from cdc import Change, Context, on_change
from cdc.routing import Router, handlers_of
from cdc.testing import RunningConsumer, read_records
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack

ROWS = 1000
POISON = 537


def test_a_poison_change_in_a_thousand_is_the_only_one_dead_lettered(pipeline: Pipeline) -> None:
    p = pipeline
    orders = p.table("orders")
    sink = p.table("order_sink")
    p.sql(f"CREATE TABLE {orders} (id int PRIMARY KEY, amount int NOT NULL)")
    # The sink refuses one amount: a real database error from inside a bulk write.
    p.sql(f"CREATE TABLE {sink} (id int PRIMARY KEY, amount int CHECK (amount <> {POISON}))")
    p.write_file({orders: {}}, topic_partitions=3)
    p.apply()
    sizes: list[int] = []
    lock = threading.Lock()

    @on_change(f"public.{orders}", batch=200, max_wait_s=0.2)
    def bulk(changes: list[Change], ctx: Context) -> None:
        with lock:
            sizes.append(len(changes))
        with ctx.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {sink} (id, amount) VALUES (%s, %s) "
                "ON CONFLICT (id) DO UPDATE SET amount = excluded.amount",
                [(c.after["id"], c.after["amount"]) for c in changes if c.after is not None],
            )

    settings = p.stack.settings(
        watched_tables=p.file,
        group_id=p.id,
        http_port=None,
        retry_attempts=2,
        retry_backoff_s=0.05,
    )
    watched = p.watched()
    with RunningConsumer(settings, watched, Router(handlers_of(bulk), watched.tables)) as c:
        # Ten transactions of a hundred rows: the lists cut across them and the partitions.
        for start in range(1, ROWS + 1, 100):
            p.sql(
                f"INSERT INTO {orders} SELECT i, i FROM generate_series(%s::int, %s::int) AS i",
                (start, start + 99),
            )
        c.wait_until(lambda _: len(c.handled) >= ROWS, "every change finished", timeout=180)
        handled = list(c.handled)
    parked = [h for h in handled if h.parked]
    assert [h.event.key for h in parked] == [{"id": POISON}]  # type: ignore[union-attr]
    assert "violates check constraint" in parked[0].parked[0]
    assert sorted(h.event.key["id"] for h in handled) == list(range(1, ROWS + 1))  # type: ignore[union-attr]
    assert p.sql(f"SELECT count(*), sum(amount) FROM {sink}") == [
        (ROWS - 1, ROWS * (ROWS + 1) // 2 - POISON)
    ]
    # Lists, not single changes; the poison's lists retried and halved, not all changes.
    assert max(sizes) > 1
    assert sum(sizes) < 3 * ROWS
    (dead,) = read_records(p.stack.kafka_bootstrap, [f"{p.id}.dlq"], 1)
    headers = dict(dead.headers() or [])
    assert headers["cdc.dlq.handler"].decode().endswith("bulk")
    captured = {
        (r.partition(), r.offset()): r.value()
        for r in read_records(p.stack.kafka_bootstrap, [p.topic(orders)], ROWS)
    }
    (poison,) = parked
    assert dead.value() == captured[(poison.partition, poison.offset)]
