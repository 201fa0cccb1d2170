"""`cdc run` as users run it: a subprocess that finds the handlers by module name, checks for
drift before it starts, runs the handlers, dead-letters what keeps failing and goes on, and
stops on SIGTERM with its offsets committed; then `cdc dlq list` and `cdc dlq replay` once
the handler is fixed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from cdc.testing import RecordReader
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack

HANDLERS = """
from pathlib import Path

from cdc import Change, Context, on_change


@on_change("public.{notes}")
def record(change: Change, ctx: Context) -> None:
    row = change.row
    if row["body"] == "poison" and not Path("{fixed}").exists():
        raise ValueError("cannot digest poison")
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO {effects} (change_key, note_id, op) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (change.idempotency_key, row["id"], change.op.value),
        )
"""

UNCAPTURED = """
from cdc import on_change


@on_change("public.{other}")
def nobody_captures_this(change, ctx):
    pass
"""


def cdc_run(pipeline: Pipeline, tmp: Path, module: str, *args: str) -> subprocess.Popen[str]:
    return cdc(pipeline, tmp, module, "run", *args)


def cdc(pipeline: Pipeline, tmp: Path, module: str, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        **pipeline.stack.env(),
        "CDC_WATCHED_TABLES": str(pipeline.file),
        "CDC_HANDLERS": module,
        "CDC_GROUP_ID": pipeline.id,
        "CDC_RETRY_ATTEMPTS": "2",
        "CDC_RETRY_BACKOFF_S": "0.05",
        "CDC_HTTP_PORT": "0",
        "COLUMNS": "300",  # rich tables unfolded
        "PYTHONPATH": str(tmp),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cdc", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_cdc_run(pipeline: Pipeline, tmp_path: Path) -> None:
    notes, effects = pipeline.table("notes"), pipeline.table("effects")
    pipeline.sql(f"CREATE TABLE {notes} (id int PRIMARY KEY, body text)")
    pipeline.sql(f"CREATE TABLE {effects} (change_key text PRIMARY KEY, note_id int, op text)")
    pipeline.sql(f"INSERT INTO {notes} VALUES (1, 'old')")
    pipeline.write_file({notes: {"replica_identity": "full"}})
    pipeline.apply()
    module = f"handlers_{pipeline.id}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(HANDLERS.format(notes=notes, effects=effects, fixed=tmp_path / "fixed"))
    )
    (tmp_path / f"{module}_bad.py").write_text(
        textwrap.dedent(UNCAPTURED.format(other=pipeline.table("other")))
    )

    # Drift: a handler for a table nobody captures. The consumer refuses to start.
    refused = cdc_run(pipeline, tmp_path, f"{module},{module}_bad")
    output, _ = refused.communicate(timeout=120)
    assert refused.returncode == 2, output
    assert f"public.{pipeline.table('other')}" in output
    assert "Debezium does not capture it" in output
    assert "refusing to start" in output

    proc = cdc_run(pipeline, tmp_path, module)
    try:
        pipeline.sql(f"UPDATE {notes} SET body = 'new' WHERE id = 1")
        pipeline.sql(f"INSERT INTO {notes} VALUES (2, 'poison')")
        pipeline.sql(f"INSERT INTO {notes} VALUES (3, 'fine')")
        pipeline.sql(f"DELETE FROM {notes} WHERE id = 1")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = pipeline.sql(f"SELECT note_id, op FROM {effects} ORDER BY note_id, op")
            if len(done) >= 3:
                break
            time.sleep(0.5)
        # No snapshot read (nobody asked), the poisoned insert parked, the rest handled.
        assert done == [(1, "d"), (1, "u"), (3, "c")]
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "handler.retry" in output
    assert "record.dead_lettered" in output

    topic = pipeline.topic(notes)
    with RecordReader(pipeline.stack.kafka_bootstrap, [f"{pipeline.id}.dlq"]) as reader:
        (parked,) = reader.wait(lambda rs: len(rs) >= 1, timeout=30)
    headers = {k: v.decode() for k, v in parked.headers() or [] if v is not None}
    assert headers["cdc.dlq.topic"] == topic
    assert (headers["cdc.dlq.partition"], headers["cdc.dlq.offset"]) == ("0", "2")
    assert headers["cdc.dlq.handler"] == f"{module}.record"
    assert headers["cdc.dlq.error"] == "ValueError"
    assert headers["cdc.dlq.attempts"] == "2"
    assert headers["cdc.dlq.reason"] == "gave up after 2 attempts: ValueError: cannot digest poison"
    # The original record's timestamp travels along, for a replay to restore.
    with RecordReader(pipeline.stack.kafka_bootstrap, [topic]) as reader:
        records = reader.wait(lambda rs: len(rs) >= 3, timeout=30)
    (original,) = [r for r in records if r.offset() == 2]
    assert headers["cdc.dlq.timestamp"] == str(original.timestamp()[1])
    assert b'"poison"' in (parked.value() or b"")
    assert parked.key() is not None
    assert b'"id":2' in parked.key()

    # Every record, the tombstone included, is behind the committed offset.
    group = Consumer({"bootstrap.servers": pipeline.stack.kafka_bootstrap, "group.id": pipeline.id})
    try:
        (committed,) = group.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed.offset == 6  # r, u, c (parked), c, d, tombstone
    finally:
        group.close()

    # The parked record, listed; replayed while the handler still fails: parked again.
    def command(*args: str) -> tuple[int, str]:
        proc = cdc(pipeline, tmp_path, module, *args)
        out, _ = proc.communicate(timeout=120)
        return proc.returncode, out

    code, listing = command("dlq", "list")
    assert code == 0, listing
    assert "1 record(s)" in listing
    assert f"{topic}[0]@2" in listing
    assert "ValueError" in listing
    code, out = command("dlq", "replay")
    assert code == 1, out
    assert "replayed 1 record(s): 1 parked_again" in out

    # Fixed: the replay handles it, and only the record parked again is left to replay.
    (tmp_path / "fixed").touch()
    code, out = command("dlq", "replay")
    assert code == 0, out
    assert "replayed 1 record(s): 1 handled" in out
    assert pipeline.sql(f"SELECT note_id, op FROM {effects} WHERE note_id = 2") == [(2, "c")]
    code, out = command("dlq", "replay")
    assert (code, out.strip().splitlines()[-1]) == (0, "replayed 0 record(s): nothing to replay")
    code, listing = command("dlq", "list")
    assert "2 record(s)" in listing
    assert listing.count(f"{topic}[0]@2") == 2  # the original coordinates, kept on re-parking
