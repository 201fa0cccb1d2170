"""Workloads on the real stack, through ``cdc run``: a quick lane keeps up while a slow lane
on the same table works off its backlog; a sync and an async handler that hang hold up only
their own key (their late writes fenced); a lane's rate holds."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from cdc.testing import read_records
from tests.integration.conftest import Pipeline
from tests.integration.test_run import cdc_run

pytestmark = pytest.mark.stack

FULL = os.environ.get("CDC_RELIABILITY") == "full"


def handlers(tmp: Path, p: Pipeline, source: str, **names: str) -> str:
    module = f"lanes_{p.id}"
    (tmp / f"{module}.py").write_text(textwrap.dedent(source.format(**names)))
    return module


def wait_rows(p: Pipeline, query: str, count: int, timeout: float) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = p.sql(query)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def stopped(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, output
    return output


SLOW_AND_QUICK = """
import time

from cdc import Change, Context, on_change


@on_change("public.{orders}")
def quick(change: Change, ctx: Context) -> None:
    committed = change.source.ts_us / 1e6
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO {quick} VALUES (%s, extract(epoch FROM clock_timestamp()) - %s)",
            (change.row["id"], committed),
        )


@on_change("public.{orders}", workload="sync")
def slow(change: Change, ctx: Context) -> None:
    time.sleep(2)
    with ctx.connection() as conn:
        conn.execute("INSERT INTO {slow} VALUES (%s, clock_timestamp())", (change.row["id"],))
"""


@pytest.mark.parametrize("encoding", ["json", "json-noschema", "avro"])
def test_a_quick_lane_keeps_up_while_a_slow_one_works_off_its_backlog(
    pipeline: Pipeline, tmp_path: Path, encoding: str
) -> None:
    p = pipeline
    orders, quick, slow = p.table("orders"), p.table("quick"), p.table("slow")
    p.sql(f"CREATE TABLE {orders} (id int PRIMARY KEY)")
    p.sql(f"CREATE TABLE {quick} (id int PRIMARY KEY, lag_s float8)")
    p.sql(f"CREATE TABLE {slow} (id int PRIMARY KEY, at timestamptz)")
    lanes = {"sync": {"concurrency": 2}}
    p.write_file({orders: {}}, workloads=lanes, topic_partitions=2, encoding=encoding)
    p.apply()
    module = handlers(tmp_path, p, SLOW_AND_QUICK, orders=orders, quick=quick, slow=slow)
    rows = 30 if FULL else 16
    proc = cdc_run(p, tmp_path, module)
    try:
        # A first change makes the topic, and both groups find it: then the clock starts.
        p.sql(f"INSERT INTO {orders} VALUES (0)")
        wait_rows(p, f"SELECT id FROM {slow}", 1, 90)
        for i in range(1, rows + 1):  # four a second: twice what the slow lane can do
            p.sql(f"INSERT INTO {orders} VALUES ({i})")
            time.sleep(0.25)
        lags = wait_rows(p, f"SELECT id, lag_s FROM {quick} WHERE id > 0", rows, 30)
        behind = len(p.sql(f"SELECT id FROM {slow} WHERE id > 0"))
        done = wait_rows(p, f"SELECT id FROM {slow} WHERE id > 0", rows, rows + 60)
    finally:
        output = stopped(proc)
    assert sorted(i for i, _ in lags) == list(range(1, rows + 1)), output
    worst = max(lag for _, lag in lags)
    print(f"quick lane: lags {sorted(round(lag, 3) for _, lag in lags)}; slow lane: {behind} done")
    assert worst < 1.0
    assert behind < rows * 3 // 4  # the slow lane was well behind when the quick one was done
    assert len(done) == rows
    assert "workload=sync" in output or '"workload": "sync"' in output


HANGING = """
import asyncio
import time

from cdc import Change, Context, on_change


def waited(change: Change) -> float:  # seconds since the record was written to Kafka
    return time.time() - change.kafka.timestamp_ms / 1000


@on_change("public.{items}", workload="blocking", timeout_s=1, attempts=2)
def blocking(change: Change, ctx: Context) -> None:
    with ctx.connection() as conn:
        conn.execute("INSERT INTO {sink} (lane, id, v, wait_s) VALUES ('sync', %s, %s, %s)",
                     (change.row["id"], change.row["v"], waited(change)))
        if change.row["v"] == "hang":
            time.sleep(6)  # returns, late: its insert must not commit


@on_change("public.{items}", workload="waiting", timeout_s=1, attempts=2)
async def waiting(change: Change, ctx: Context) -> None:
    async with ctx.aconnection() as conn:
        await conn.execute(
            "INSERT INTO {sink} (lane, id, v, wait_s) VALUES ('async', %s, %s, %s)",
            (change.row["id"], change.row["v"], waited(change)),
        )
        if change.row["v"] == "hang":
            await asyncio.sleep(3600)
"""


@pytest.mark.parametrize("encoding", ["json", "json-noschema", "avro"])
def test_a_hanging_handler_holds_up_its_own_key_and_nothing_else(
    pipeline: Pipeline, tmp_path: Path, encoding: str
) -> None:
    p = pipeline
    items, sink = p.table("items"), p.table("sink")
    p.sql(f"CREATE TABLE {items} (id int PRIMARY KEY, v text)")
    p.sql(
        f"CREATE TABLE {sink} (n serial PRIMARY KEY, lane text, id int, v text, wait_s float8, "
        "at timestamptz DEFAULT clock_timestamp())"
    )
    lanes = {"blocking": {"concurrency": 4}, "waiting": {"concurrency": 4}}
    # One partition: without time limits the hang would stall it all.
    p.write_file({items: {}}, workloads=lanes, encoding=encoding)
    p.apply()
    module = handlers(tmp_path, p, HANGING, items=items, sink=sink)
    proc = cdc_run(p, tmp_path, module)
    try:
        p.sql(f"INSERT INTO {items} VALUES (0, 'ok')")  # the topic made, both lanes on it
        wait_rows(p, f"SELECT id FROM {sink}", 2, 90)
        p.sql(f"INSERT INTO {items} VALUES (1, 'hang')")
        started = time.monotonic()
        p.sql(f"INSERT INTO {items} SELECT i, 'ok' FROM generate_series(2, 20) AS i")
        p.sql(f"UPDATE {items} SET v = 'after' WHERE id = 1")
        others = wait_rows(p, f"SELECT lane, id FROM {sink} WHERE id > 1", 38, 30)
        others_s = time.monotonic() - started
        last = dict(p.sql(f"SELECT lane, max(at) FROM {sink} WHERE id > 1 GROUP BY lane"))
        waits = p.sql(f"SELECT lane, id, wait_s FROM {sink} WHERE id > 1 ORDER BY wait_s DESC")
        # Each lane parks the hanging change, then its key's later change behind it.
        parked = read_records(p.stack.kafka_bootstrap, [f"{p.id}.dlq"], 4)
        time.sleep(6)  # the sync handler's late returns come back meanwhile, fenced
        final = p.sql(f"SELECT lane, id, v FROM {sink} WHERE id > 0 ORDER BY lane, id")
    finally:
        output = stopped(proc)
    print(f"the other keys were done {others_s:.1f} s after the hang began; waits {waits[:5]}")
    assert len(others) == 38, output
    # No other key waited for the hang: each ran soon after its record was written (the
    # hang holds its lane's first worker 2 s and more).
    assert all(wait < 1.5 for _, _, wait in waits), (waits, output)
    # Each other key once per lane; the hanging change's writes rolled back, and its key's
    # later change waits behind it in the dead-letter topic (for a replay, in order).
    expected = [(lane, i, "ok") for lane in ("async", "sync") for i in range(2, 21)]
    assert final == expected
    heads = [{k: (v or b"").decode() for k, v in r.headers() or []} for r in parked]
    behind = [h for h in heads if h["cdc.dlq.error"] == "ParkedBehind"]
    hung = [h for h in heads if h["cdc.dlq.error"] != "ParkedBehind"]
    assert len(behind) == len(hung) == 2
    # Offsets: 0 the first row, 1 the insert that hung, 2-20 the others, 21 its update.
    assert {int(h["cdc.dlq.offset"]) for h in hung} == {1}
    assert {int(h["cdc.dlq.offset"]) for h in behind} == {21}
    for headers in hung:
        assert "gave up after 2 attempts" in headers["cdc.dlq.reason"]
        assert "time limit of 1 s" in headers["cdc.dlq.reason"]
    for record, headers in zip(parked, heads, strict=True):
        if headers["cdc.dlq.error"] == "ParkedBehind":
            continue
        lane = "sync" if headers["cdc.dlq.handler"].endswith("blocking") else "async"
        # Every other key of the partition was done before the hanging one gave up.
        assert last[lane].timestamp() * 1000 < record.timestamp()[1], lane
    assert "handler.abandoned" in output


RATED = """
from cdc import Change, Context, on_change


@on_change("public.{calls}", workload="api")
def call_api(change: Change, ctx: Context) -> None:
    with ctx.connection() as conn:
        conn.execute("INSERT INTO {sink} VALUES (%s, clock_timestamp())", (change.row["id"],))
"""


@pytest.mark.reliability  # also in `make reliability`: a minute at 50/s
def test_a_lanes_rate_holds(pipeline: Pipeline, tmp_path: Path) -> None:
    p = pipeline
    calls, sink = p.table("calls"), p.table("sink")
    p.sql(f"CREATE TABLE {calls} (id int PRIMARY KEY)")
    p.sql(f"CREATE TABLE {sink} (id int PRIMARY KEY, at timestamptz)")
    lanes = {"api": {"concurrency": 8, "rate": {"runs": 50, "per_s": 1}}}
    p.write_file({calls: {}}, workloads=lanes, topic_partitions=3)
    p.apply()
    seconds = 60 if FULL else 12
    rows = 50 * seconds + 1
    p.sql(f"INSERT INTO {calls} SELECT i FROM generate_series(1, {rows}) AS i")  # a backlog
    proc = cdc_run(p, tmp_path, handlers(tmp_path, p, RATED, calls=calls, sink=sink))
    try:
        done = wait_rows(p, f"SELECT id FROM {sink}", rows, seconds + 90)
    finally:
        stopped(proc)
    assert len(done) == rows
    ((span,),) = p.sql(f"SELECT extract(epoch FROM max(at) - min(at))::float8 FROM {sink}")
    rate = (rows - 1) / span
    print(f"{rows} runs at 50/s: {rate:.2f} runs/s over {span:.1f} s")
    assert 45 <= rate <= 55


SCALED = """
from cdc import Change, Context, on_change


@on_change("public.{orders}", ledger=True)
def ship(change: Change, ctx: Context) -> None:
    with ctx.connection() as conn:
        conn.execute("INSERT INTO {effects} (lane, key) VALUES ('default', %s)",
                     (change.idempotency_key,))


@on_change("public.{orders}", workload="sync", ledger=True)
def index(change: Change, ctx: Context) -> None:
    with ctx.connection() as conn:
        conn.execute("INSERT INTO {effects} (lane, key) VALUES ('sync', %s)",
                     (change.idempotency_key,))
"""


@pytest.mark.reliability  # also in `make reliability`: 3,000 changes
def test_each_workload_scales_one_two_one_apart(pipeline: Pipeline, tmp_path: Path) -> None:
    """``cdc run --workload`` processes per workload, scaled 1-2-1 while changes flow: each
    change's effect once per workload, none lost."""
    p = pipeline
    orders, effects = p.table("orders"), p.table("effects")
    p.sql(f"CREATE TABLE {orders} (id int PRIMARY KEY, v int)")
    p.sql(f"CREATE TABLE {effects} (n serial PRIMARY KEY, lane text, key text)")
    p.write_file({orders: {}}, workloads={"sync": {"concurrency": 4}}, topic_partitions=4)
    p.apply()
    module = handlers(tmp_path, p, SCALED, orders=orders, effects=effects)
    rows = 3000 if FULL else 600
    written = 0

    def write(upto: int, per_s: float = 100) -> None:
        nonlocal written
        while written < upto:
            written += 1
            p.sql(f"INSERT INTO {orders} VALUES ({written}, 0)")
            time.sleep(1 / per_s)

    first = [cdc_run(p, tmp_path, module, "--workload", w) for w in ("default", "sync")]
    second: list[subprocess.Popen[str]] = []
    outputs: list[str] = []
    per_s = rows / 3 / 15  # each phase about 15 s: time to start, join and rebalance
    try:
        write(rows // 3, per_s)
        second = [cdc_run(p, tmp_path, module, "--workload", w) for w in ("default", "sync")]
        write(2 * rows // 3, per_s)  # the groups rebalance meanwhile
        outputs += [stopped(proc) for proc in second]
        write(rows, per_s)
        ((done,),) = p.sql(f"SELECT count(DISTINCT (lane, key)) FROM {effects}")
        deadline = time.monotonic() + 120
        while done < 2 * rows and time.monotonic() < deadline:
            time.sleep(0.5)
            ((done,),) = p.sql(f"SELECT count(DISTINCT (lane, key)) FROM {effects}")
    finally:
        for proc in [*first, *second]:
            if proc.poll() is None:
                outputs.append(stopped(proc))
    per_lane = dict(p.sql(f"SELECT lane, count(*) FROM {effects} GROUP BY lane"))
    doubled = p.sql(
        f"SELECT lane, key, count(*) FROM {effects} GROUP BY lane, key HAVING count(*) > 1"
    )
    print(f"{rows} changes, 1-2-1 consumers per workload: effects {per_lane}, doubled {doubled}")
    assert per_lane == {"default": rows, "sync": rows}, outputs[-1][-3000:]
    assert doubled == []
    # The second of each really took partitions of the topic, in its own workload's group.
    topic = p.topic(orders)
    for output in outputs[:2]:
        lines = output.splitlines()
        assert any("partitions.assigned" in line and topic in line for line in lines), output
    assert [("cdc.sync" in o or f"{p.id}.sync" in o) for o in outputs[:2]] == [False, True]
