"""Operators' orders on the real stack, across two running consumers of one group: `cdc pause`
holds one handler's changes (its offsets not passed) while the other handler goes on, also
across a consumer restart; `cdc resume` runs what waited, in order; `cdc skip` parks a
record being retried, on purpose, and its key's next change goes on; `cdc controls` shows
the orders in force; `cdc rewind` re-runs one handler, or a workload, from a point, once,
while another workload keeps its position."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from cdc.testing import RecordReader
from tests.integration.conftest import Pipeline
from tests.integration.test_held_keys import run_command
from tests.integration.test_kill import start
from tests.waiting import eventually

pytestmark = pytest.mark.stack

HANDLERS = """
from cdc import Change, Context, Retry, on_change


@on_change("public.{items}")
def mirror(change: Change, ctx: Context) -> Retry | None:
    row = change.after
    with ctx.connection() as conn:
        if conn.execute("SELECT 1 FROM {broken} WHERE id = %s", (row["id"],)).fetchone():
            return Retry("the mirror refuses this row for now")
        conn.execute(
            "INSERT INTO {mirror} (id, v) VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
            (row["id"], row["v"]),
        )
    return None


@on_change("public.{items}")
def audit(change: Change, ctx: Context) -> None:
    row = change.after
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO {audit} (id, v) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (row["id"], row["v"]),
        )
"""


def test_pause_resume_and_skip_act_on_every_running_consumer(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    p = pipeline
    items, mirror, audit, broken = (p.table(t) for t in ("items", "mirror", "audit", "broken"))
    p.sql(f"CREATE TABLE {items} (id int PRIMARY KEY, v int NOT NULL)")
    p.sql(f"CREATE TABLE {mirror} (id int PRIMARY KEY, v int NOT NULL)")
    p.sql(f"CREATE TABLE {audit} (id int, v int, PRIMARY KEY (id, v))")
    p.sql(f"CREATE TABLE {broken} (id int PRIMARY KEY)")
    admin = AdminClient(p.settings.kafka_config())  # type: ignore[arg-type]
    admin.create_topics([NewTopic(p.topic(items), 2, 1)])[p.topic(items)].result()
    p.write_file({items: {}})
    p.apply()
    module = f"controls_{p.id}"
    names = {"items": items, "mirror": mirror, "audit": audit, "broken": broken}
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(HANDLERS.format(**names)))
    # The refused row is retried for long (not dead-lettered by itself): an operator skips it.
    env = {
        "CDC_RETRY_ATTEMPTS": "1000",
        "CDC_RETRY_BACKOFF_S": "0.5",
        "CDC_RETRY_BACKOFF_MAX_S": "1",
    }
    logs: list[Path] = []

    def run(name: str) -> subprocess.Popen[str]:
        logs.append(tmp_path / f"{name}.log")
        return start(p, logs[-1], module, tmp_path, **env)

    def command(*args: str) -> str:
        code, out = run_command(p, tmp_path, module, *args)
        assert code == 0, out
        return out

    def rows(table: str) -> dict[int, int]:
        return dict(p.sql(f"SELECT id, v FROM {table}"))  # type: ignore[arg-type]

    def audited() -> set[tuple[int, int]]:
        return set(p.sql(f"SELECT id, v FROM {audit}"))  # type: ignore[arg-type]

    def logged(event: str, proc_logs: list[Path]) -> bool:
        return all(event in log.read_text() for log in proc_logs)

    procs = [run("first"), run("second")]
    try:
        p.sql(f"INSERT INTO {items} SELECT i, 1 FROM generate_series(1, 8) AS i")
        eventually(lambda: rows(mirror), lambda m: m == rows(items), what="the rows mirrored")

        out = command("pause", "mirror", "--reason", "a bad deploy")
        assert "paused" in out, out
        eventually(lambda: logged("control.paused", logs), what="both paused", timeout=30)
        p.sql(f"UPDATE {items} SET v = 2")
        eventually(audited, lambda a: {(i, 2) for i in range(1, 9)} <= a, what="audit goes on")
        time.sleep(2)
        assert set(rows(mirror).values()) == {1}, "a paused handler ran"

        # A restart while paused: the new consumer reads the pause before running anything,
        # and the held changes (their offsets not passed) are read again and held again.
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(timeout=60) == 0
        procs[0] = run("third")
        p.sql(f"UPDATE {items} SET v = 3 WHERE id <= 4")
        eventually(audited, lambda a: {(i, 3) for i in range(1, 5)} <= a, what="audit again")
        time.sleep(3)
        assert set(rows(mirror).values()) == {1}, "a paused handler ran after a restart"
        listing = command("controls")
        assert "a bad deploy" in listing, listing

        command("resume", "mirror")
        eventually(lambda: rows(mirror), lambda m: m == rows(items), what="what waited, in order")

        # A record retried for ever: skipped on purpose, parked with the reason, and its
        # key's next change applies (a skip holds nothing behind it).
        p.sql(f"INSERT INTO {broken} VALUES (5)")
        p.sql(f"UPDATE {items} SET v = 4 WHERE id = 5")
        where = eventually(lambda: retried(logs), lambda w: w is not None, what="a retry")
        assert where is not None
        topic, partition, offset = where
        command(
            "skip", "mirror", "--topic", topic, "--partition", str(partition),
            "--offset", str(offset), "--reason", "row 5 is known bad",
        )  # fmt: skip
        with RecordReader(p.stack.kafka_bootstrap, [f"{p.id}.dlq"]) as reader:
            (parked,) = reader.wait(lambda rs: len(rs) >= 1, timeout=60)
        headers = {k: (v or b"").decode() for k, v in parked.headers() or []}
        assert headers["cdc.dlq.error"] == "Skipped"
        assert "row 5 is known bad" in headers["cdc.dlq.reason"]
        assert int(headers["cdc.dlq.offset"]) == offset
        p.sql(f"DELETE FROM {broken}")
        p.sql(f"UPDATE {items} SET v = 5 WHERE id = 5")
        eventually(lambda: rows(mirror).get(5), lambda v: v == 5, what="key 5 after its skip")
        listing = command("controls")
        assert "row 5 is known bad" in listing, listing
        assert "a bad deploy" not in listing, listing  # resumed: no longer in force
        # A replay lets the skipped record go, rather than parking it again.
        replayed = command("dlq", "replay")
        assert "1 skipped_by_operator" in replayed, replayed
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    for log in logs:
        text = log.read_text()
        assert "control.paused" in text, text
    assert logged("control.resumed", logs[1:])
    assert any("control.skip" in log.read_text() for log in logs)


def retried(logs: list[Path]) -> tuple[str, int, int] | None:
    """Where the first record being retried is, from the consumers' logs."""
    for log in logs:
        for line in log.read_text().splitlines():
            if '"handler.retry"' in line:
                entry = json.loads(line)
                return entry["topic"], entry["partition"], entry["offset"]
    return None


COUNTED = """
from cdc import Change, Context, on_change


def counted(ctx: Context, name: str, change: Change) -> None:
    with ctx.connection() as conn:
        conn.execute("INSERT INTO {runs} (handler, id) VALUES (%s, %s)", (name, change.row["id"]))


@on_change("public.{items}")
def first(change: Change, ctx: Context) -> None:
    counted(ctx, "first", change)


@on_change("public.{items}")
def second(change: Change, ctx: Context) -> None:
    counted(ctx, "second", change)


@on_change("public.{items}", workload="elsewhere")
def third(change: Change, ctx: Context) -> None:
    counted(ctx, "third", change)
"""


def test_rewind_reruns_one_handler_or_a_workload_once_and_leaves_others_alone(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    p = pipeline
    items, runs = p.table("items"), p.table("runs")
    p.sql(f"CREATE TABLE {items} (id int PRIMARY KEY)")
    p.sql(f"CREATE TABLE {runs} (n serial PRIMARY KEY, handler text, id int)")
    admin = AdminClient(p.settings.kafka_config())  # type: ignore[arg-type]
    admin.create_topics([NewTopic(p.topic(items), 2, 1)])[p.topic(items)].result()
    p.write_file({items: {}}, workloads={"elsewhere": {}})
    p.apply()
    module = f"rewind_{p.id}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(COUNTED.format(items=items, runs=runs)))
    logs: list[Path] = []

    def run(name: str) -> subprocess.Popen[str]:
        logs.append(tmp_path / f"{name}.log")
        return start(p, logs[-1], module, tmp_path)

    def counts() -> dict[str, int]:
        rows = p.sql(f"SELECT handler, count(*) FROM {runs} GROUP BY handler")
        return dict(rows)  # type: ignore[arg-type]

    def command(*args: str) -> str:
        code, out = run_command(p, tmp_path, module, *args)
        assert code == 0, out
        return out

    def owns_partitions(log: Path) -> bool:  # in both workloads
        lines = [x for x in log.read_text().splitlines() if '"partitions.assigned"' in x]
        return sum('"partitions": []' not in x for x in lines) >= 2

    procs = [run("one")]
    try:
        p.sql(f"INSERT INTO {items} VALUES (0)")  # the topic's first record, before the point
        eventually(counts, lambda c: c == {"first": 1, "second": 1, "third": 1}, what="row 0")
        # The second consumer in before anything is counted: a rebalance while changes run
        # redelivers some (at least once), and these counts must be exact.
        procs.append(run("two"))
        eventually(lambda: owns_partitions(logs[1]), what="the second consumer's partitions")
        time.sleep(2)
        point = time.time()
        p.sql(f"INSERT INTO {items} SELECT i FROM generate_series(1, 10) AS i")
        each = {"first": 11, "second": 11, "third": 11}
        eventually(counts, lambda c: c == each, what="the rows, once each")

        at = dt.datetime.fromtimestamp(point, dt.UTC).isoformat()
        command("rewind", "first", "--to", at, "--reason", "a fixed bug in first")
        eventually(counts, lambda c: c["first"] == 21, what="first re-ran from the point")
        time.sleep(3)
        assert counts() == {"first": 21, "second": 11, "third": 11}

        command("rewind", "--workload", "default", "--to", "0", "--reason", "everything again")
        again = {"first": 32, "second": 22, "third": 11}
        eventually(counts, lambda c: c == again, what="the workload from offset 0")

        # Carried out once per partition: a restart and a rebalance run nothing again.
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(timeout=60) == 0
        procs[0] = run("three")
        time.sleep(8)
        assert counts() == again
        p.sql(f"INSERT INTO {items} VALUES (11)")
        eventually(counts, lambda c: c == {"first": 33, "second": 23, "third": 12}, what="row 11")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    assert sum(log.read_text().count('"control.rewound"') for log in logs) == 4  # 2 x 2
