"""Dead letters that keep per-key order, on the real stack: a row's change is parked, its
later changes are parked behind it (not applied over it), across a consumer restart and a
rebalance; once the handler is fixed, `cdc dlq replay` applies them in their order and
releases the key, and the running consumer applies the next change at once. The mirror ends
equal to the source, which a replay of an older change over a newer one would break."""

from __future__ import annotations

import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from cdc.testing import RecordReader
from tests.integration.conftest import Pipeline
from tests.integration.test_kill import start
from tests.integration.test_run import cdc
from tests.waiting import eventually

pytestmark = pytest.mark.stack

HANDLERS = """
from cdc import Change, Context, DeadLetter, on_change


@on_change("public.{items}")
def mirror(change: Change, ctx: Context) -> DeadLetter | None:
    row = change.after
    with ctx.connection() as conn:
        if conn.execute("SELECT 1 FROM {broken} WHERE id = %s", (row["id"],)).fetchone():
            return DeadLetter("the mirror refuses this row for now")
        conn.execute(
            "INSERT INTO {mirror} (id, v) VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
            (row["id"], row["v"]),
        )
    return None
"""


def test_a_keys_changes_wait_behind_its_dead_letter_until_replayed(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    items, mirror, broken = (pipeline.table(t) for t in ("items", "mirror", "broken"))
    pipeline.sql(f"CREATE TABLE {items} (id int PRIMARY KEY, v int NOT NULL)")
    pipeline.sql(f"CREATE TABLE {mirror} (id int PRIMARY KEY, v int NOT NULL)")
    pipeline.sql(f"CREATE TABLE {broken} (id int PRIMARY KEY)")
    # Two partitions, made before the connector: a rebalance moves one.
    admin = AdminClient(pipeline.settings.kafka_config())  # type: ignore[arg-type]
    admin.create_topics([NewTopic(pipeline.topic(items), 2, 1)])[pipeline.topic(items)].result()
    pipeline.write_file({items: {}})
    pipeline.apply()
    module = f"held_{pipeline.id}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(HANDLERS.format(items=items, mirror=mirror, broken=broken))
    )
    dlq = f"{pipeline.id}.dlq"

    def mirrored() -> dict[int, int]:
        return dict(pipeline.sql(f"SELECT id, v FROM {mirror}"))  # type: ignore[arg-type]

    def source() -> dict[int, int]:
        return dict(pipeline.sql(f"SELECT id, v FROM {items}"))  # type: ignore[arg-type]

    def parked_for(key_id: int, count: int) -> list[dict[str, str]]:
        with RecordReader(pipeline.stack.kafka_bootstrap, [dlq]) as reader:
            records = reader.wait(
                lambda rs: (
                    sum(f'"id":{key_id}}}'.encode() in (r.key() or b"") for r in rs) >= count
                ),
                timeout=90,
            )
        return [
            {k: (v or b"").decode() for k, v in r.headers() or []}
            for r in records
            if f'"id":{key_id}}}'.encode() in (r.key() or b"")
        ]

    def run(name: str) -> subprocess.Popen[str]:
        env = {"CDC_RETRY_ATTEMPTS": "1"}
        return start(pipeline, tmp_path / f"{name}.log", module, tmp_path, **env)

    def stop(proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

    first = run("first")
    second = None
    try:
        for i in range(1, 6):
            pipeline.sql(f"INSERT INTO {items} VALUES ({i}, 1)")
        eventually(mirrored, lambda m: m == source(), what="the first rows mirrored")
        pipeline.sql(f"INSERT INTO {broken} VALUES (1), (2)")
        pipeline.sql(f"UPDATE {items} SET v = 2 WHERE id = 1")  # refused: parked
        pipeline.sql(f"UPDATE {items} SET v = 2 WHERE id = 2")  # refused too
        parked_for(1, 1)
        parked_for(2, 1)
        pipeline.sql(f"DELETE FROM {broken} WHERE id = 1")  # the mirror would take it now...
        pipeline.sql(f"UPDATE {items} SET v = 3 WHERE id = 1")  # ...but it waits behind v = 2
        pipeline.sql(f"UPDATE {items} SET v = 2 WHERE id = 3")  # other keys flow on
        eventually(lambda: mirrored().get(3), lambda v: v == 2, what="another key flowing")
        headers = parked_for(1, 2)
        assert [h["cdc.dlq.error"] for h in headers] == ["DeadLetter", "ParkedBehind"]
        assert "cdc dlq replay" in headers[1]["cdc.dlq.reason"]
        assert mirrored()[1] == 1  # not v = 3 over a missing v = 2

        # A second consumer joins (a rebalance), the first stops (a restart of sorts): the one
        # left knows key 1 is held from the dead-letter topic alone.
        second = run("second")
        time.sleep(5)
        stop(first)
        pipeline.sql(f"UPDATE {items} SET v = 4 WHERE id = 1")
        pipeline.sql(f"UPDATE {items} SET v = 3 WHERE id = 4")
        eventually(lambda: mirrored().get(4), lambda v: v == 3, what="key 4 after the restart")
        headers = parked_for(1, 3)
        assert headers[-1]["cdc.dlq.error"] == "ParkedBehind"
        assert mirrored()[1] == 1

        code, listing = run_command(pipeline, tmp_path, module, "dlq", "list")
        assert code == 0, listing
        assert "held keys" in listing, listing

        # Fixed (row 2's refusal lifted too): the replay applies key 1's changes in order and
        # releases it, and the running consumer applies its next change at once.
        pipeline.sql(f"DELETE FROM {broken}")
        code, out = run_command(pipeline, tmp_path, module, "dlq", "replay")
        assert code == 0, out
        assert "replayed 4 record(s): 4 handled" in out, out
        assert mirrored() == source()
        pipeline.sql(f"UPDATE {items} SET v = 5 WHERE id = 1")
        pipeline.sql(f"UPDATE {items} SET v = 3 WHERE id = 2")
        eventually(mirrored, lambda m: m == source(), what="the released keys' next changes")
        assert mirrored()[1] == 5
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)


def run_command(pipeline: Pipeline, tmp: Path, module: str, *args: str) -> tuple[int, str]:
    proc = cdc(pipeline, tmp, module, *args)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out
