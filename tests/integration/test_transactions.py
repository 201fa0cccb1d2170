"""Handlers of whole transactions on the real stack: transactions spanning two tables,
each spread over three partitions, reach the handler whole and in commit order, in every
encoding; under a SIGKILL mid-backlog and a rebalance (a second consumer joining, then
leaving), with the ledger, none is lost, partial or applied twice."""

from __future__ import annotations

import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from cdc.testing import read_records
from tests.integration.conftest import Pipeline
from tests.integration.test_kill import start

pytestmark = pytest.mark.stack

# The handler `cdc run` imports: one row per transaction it is given, and a running total
# that only the ledger keeps exact across redeliveries.
HANDLER = """
import os

from cdc import Changes, Context, on_transaction

ORDERS, LINES, SEEN = os.environ["TX_ORDERS"], os.environ["TX_LINES"], os.environ["TX_SEEN"]


@on_transaction(ORDERS, LINES, ledger=True)
def whole(changes: Changes, ctx: Context) -> None:
    orders = sum(1 for c in changes if c.table == "public." + ORDERS)
    ops = "".join(c.op.value for c in changes)
    with ctx.connection() as conn:
        conn.execute(
            f"INSERT INTO {SEEN} (tx, xid, changes, orders, ops) VALUES (%s, %s, %s, %s, %s)",
            (changes.transaction, changes[0].source.tx_id, len(changes), orders, ops),
        )
        conn.execute(f"UPDATE {SEEN}_total SET changes = changes + %s", (len(changes),))
"""


def setup(p: Pipeline, tmp: Path, encoding: str) -> dict[str, str]:
    orders, lines, seen = p.table("orders"), p.table("lines"), p.table("seen")
    p.sql(f"CREATE TABLE {orders} (id int PRIMARY KEY, status text NOT NULL)")
    p.sql(f"CREATE TABLE {lines} (id serial PRIMARY KEY, order_id int NOT NULL, qty int)")
    p.sql(
        f"CREATE TABLE {seen} (n bigserial, tx text PRIMARY KEY, xid bigint, changes int, "
        "orders int, ops text)"
    )
    p.sql(f"CREATE TABLE {seen}_total (changes bigint NOT NULL)")
    p.sql(f"INSERT INTO {seen}_total VALUES (0)")
    p.write_file(
        {orders: {}, lines: {}},
        topic_partitions=3,
        transaction_metadata=True,
        encoding=encoding,
    )
    p.apply()
    (tmp / "txhandlers.py").write_text(textwrap.dedent(HANDLER))
    return {"TX_ORDERS": orders, "TX_LINES": lines, "TX_SEEN": seen}


def write(p: Pipeline, names: dict[str, str], first: int, count: int) -> dict[int, str]:
    """``count`` transactions, one after another: an order, one to four lines, and from the
    third on, an update of an earlier order. Each one's xid and its operations, in order."""
    orders, lines = names["TX_ORDERS"], names["TX_LINES"]
    made: dict[int, str] = {}
    for i in range(first, first + count):
        with p.db.transaction():
            cur = p.db.cursor()
            xid = cur.execute("SELECT txid_current()").fetchone()[0]  # type: ignore[index]
            cur.execute(f"INSERT INTO {orders} VALUES (%s, 'new')", (i,))
            n = 1 + i % 4
            cur.executemany(
                f"INSERT INTO {lines} (order_id, qty) VALUES (%s, %s)",
                [(i, q) for q in range(n)],
            )
            ops = "c" + "c" * n
            if i - first >= 2:
                cur.execute(f"UPDATE {orders} SET status = 'paid' WHERE id = %s", (i - 2,))
                ops += "u"
        made[xid] = ops
    return made


def seen(p: Pipeline, names: dict[str, str]) -> list[tuple[Any, ...]]:
    return p.sql(f"SELECT xid, changes, ops FROM {names['TX_SEEN']} ORDER BY n")


def wait_seen(p: Pipeline, names: dict[str, str], n: int, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while (got := len(seen(p, names))) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def check(p: Pipeline, names: dict[str, str], made: dict[int, str]) -> None:
    rows = seen(p, names)
    # Every transaction once, whole (its operations in the order it made them), and in
    # commit order.
    assert [xid for xid, _, _ in rows] == list(made)
    assert {xid: ops for xid, _, ops in rows} == made
    assert all(n == len(made[xid]) for xid, n, _ in rows)
    total = p.sql(f"SELECT changes FROM {names['TX_SEEN']}_total")[0][0]
    assert total == sum(len(ops) for ops in made.values())  # nothing applied twice


@pytest.mark.parametrize("encoding", ["json", "json-noschema", "avro"])
def test_transactions_arrive_whole_and_in_commit_order(
    pipeline: Pipeline, tmp_path: Path, encoding: str
) -> None:
    names = setup(pipeline, tmp_path, encoding)
    consumer = start(pipeline, tmp_path / "run.log", "txhandlers", tmp_path, **names)
    try:
        made = write(pipeline, names, 1, 40)
        got = wait_seen(pipeline, names, len(made))
    finally:
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(timeout=60)
    log = (tmp_path / "run.log").read_text()
    assert got == len(made), log[-5000:]
    check(pipeline, names, made)
    assert consumer.returncode == 0, log[-5000:]


def test_sigkill_and_a_rebalance_lose_split_and_double_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    names = setup(pipeline, tmp_path, "json")
    made = write(pipeline, names, 1, 600)  # a backlog
    first = start(pipeline, tmp_path / "first.log", "txhandlers", tmp_path, **names)
    try:
        done = wait_seen(pipeline, names, 20, timeout=120)
    finally:
        first.kill()
        first.wait(timeout=30)
    assert 20 <= done < len(made), (tmp_path / "first.log").read_text()[-5000:]

    second = start(pipeline, tmp_path / "second.log", "txhandlers", tmp_path, **names)
    try:
        wait_seen(pipeline, names, done + 30, timeout=120)
        # A second consumer joins the group: the partitions are shared out, then it
        # leaves and they come back. More transactions are written meanwhile.
        third = start(pipeline, tmp_path / "third.log", "txhandlers", tmp_path, **names)
        try:
            made |= write(pipeline, names, 1001, 30)
            time.sleep(15)
        finally:
            third.send_signal(signal.SIGTERM)
            third.wait(timeout=60)
        made |= write(pipeline, names, 2001, 10)
        got = wait_seen(pipeline, names, len(made))
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    log = (tmp_path / "second.log").read_text()
    assert got == len(made), log[-5000:]
    check(pipeline, names, made)
    # The first run's last transactions came again: the ledger knew them.
    assert "handler.duplicate" in log or "transaction.already_handled" in log


def test_a_transaction_larger_than_half_the_window_is_refused_loudly(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """Held whole, a transaction could fill the in-flight window and stall fetching: one
    over half of it goes to the dead-letter topic, every change with the reason; the
    transactions around it run as usual."""
    names = setup(pipeline, tmp_path, "json")
    env = {**names, "CDC_MAX_IN_FLIGHT": "20"}  # transactions of at most 10 changes
    made = write(pipeline, names, 1, 3)
    with pipeline.db.transaction():
        pipeline.db.execute(
            f"INSERT INTO {names['TX_LINES']} (order_id, qty) "
            "SELECT 0, q FROM generate_series(1, 25) AS q"
        )
    made |= write(pipeline, names, 101, 3)
    consumer = start(pipeline, tmp_path / "run.log", "txhandlers", tmp_path, **env)
    try:
        got = wait_seen(pipeline, names, len(made))
        parked = read_records(pipeline.stack.kafka_bootstrap, [f"{pipeline.id}.dlq"], 25)
    finally:
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(timeout=60)
    log = (tmp_path / "run.log").read_text()
    assert got == len(made), log[-5000:]
    assert [xid for xid, _, _ in seen(pipeline, names)] == list(made)
    assert "transaction.too_large" in log
    reasons = {dict(r.headers() or [])["cdc.dlq.reason"] for r in parked}
    (reason,) = reasons
    assert b"more than 10 changes" in reason
    assert b"CDC_MAX_IN_FLIGHT" in reason
