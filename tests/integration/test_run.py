"""`cdc run`, the main job for now, decodes and prints each change it receives."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import IO, Any

from tests.integration.conftest import Pipeline


def _lines(stream: IO[str], out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)


def test_cdc_run_prints_each_change(pipeline: Pipeline) -> None:
    notes = pipeline.table("notes")
    pipeline.sql(f"CREATE TABLE {notes} (id int PRIMARY KEY, body text)")
    pipeline.sql(f"INSERT INTO {notes} VALUES (1, 'old')")
    pipeline.write_file({notes: {"replica_identity": "full"}})
    pipeline.apply()
    env = {**os.environ, **pipeline.stack.env(), "CDC_WATCHED_TABLES": str(pipeline.file)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc", "run", "--group", pipeline.id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    printed: list[dict[str, Any]] = []
    try:
        pipeline.sql(f"UPDATE {notes} SET body = 'new' WHERE id = 1")
        pipeline.sql(f"DELETE FROM {notes} WHERE id = 1")
        deadline = time.monotonic() + 60
        while len(printed) < 4 and time.monotonic() < deadline:
            try:
                printed.append(json.loads(lines.get(timeout=1)))
            except queue.Empty:
                continue
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    assert [p["op"] for p in printed] == ["r", "u", "d", "tombstone"]
    assert [p["kind"] for p in printed] == ["snapshot_read", "change", "change", "tombstone"]
    read, update = printed[0], printed[1]
    assert read["after"] == {"id": 1, "body": "old"}
    assert update["before"] == {"id": 1, "body": "old"}
    assert update["after"] == {"id": 1, "body": "new"}
    assert update["table"] == f"public.{notes}"
    assert {p["topic"] for p in printed} == {pipeline.topic(notes)}
    assert [p["key"] for p in printed] == [{"id": 1}] * 4
    assert [p["offset"] for p in printed] == [0, 1, 2, 3]
