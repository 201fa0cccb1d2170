"""The operator commands as operators run them, subprocesses against the real stack: `cdc lag`,
`cdc snapshot`, `cdc connector status` and `restart`, `cdc settings`."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from cdc.connect import ConnectClient
from cdc.lag import PartitionLag, group_lag
from cdc.settings import MASK
from cdc.testing import RecordReader, read_records
from tests.integration.conftest import Pipeline
from tests.integration.test_capture import payload

pytestmark = pytest.mark.stack


def cdc(pipeline: Pipeline, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``cdc`` on the pipeline's stack and watched-tables file."""
    return subprocess.run(
        [sys.executable, "-m", "cdc", *args],
        env={
            **os.environ,
            **pipeline.stack.env(),
            "CDC_WATCHED_TABLES": str(pipeline.file),
            "COLUMNS": "200",  # wide enough that no table cell wraps
            **env,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )


def cells(output: str) -> list[list[str]]:
    """The body rows of the tables printed in ``output``, as lists of cell texts."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def test_lag_per_partition_and_table(pipeline: Pipeline) -> None:
    items, empty = pipeline.table("items"), pipeline.table("empty")
    for table in (items, empty):
        pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    pipeline.write_file({items: {}, empty: {}})
    pipeline.apply()
    written_ms = time.time() * 1000
    pipeline.sql(f"INSERT INTO {items} SELECT generate_series(1, 5)")
    topic = pipeline.topic(items)
    read_records(pipeline.stack.kafka_bootstrap, [topic], 5)
    group = f"{pipeline.id}-lag"
    committer = Consumer(pipeline.settings.kafka_config(**{"group.id": group}))
    try:
        committer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    finally:
        committer.close()

    # In the file's order (write_file sorts it). Nothing has been written to the empty
    # table: its topic does not exist yet.
    rows = group_lag(pipeline.settings, pipeline.watched(), group)
    assert [dataclasses.replace(r, oldest_unread_ms=None) for r in rows] == [
        PartitionLag(f"public.{empty}", pipeline.topic(empty), None, None, low=0, end=0),
        PartitionLag(f"public.{items}", topic, 0, committed=2, low=0, end=5),
    ]
    # The first record still to read (offset 2) was produced after the insert, just now.
    assert rows[0].oldest_unread_ms is None
    assert rows[1].oldest_unread_ms is not None
    assert written_ms - 1000 <= rows[1].oldest_unread_ms <= time.time() * 1000
    # A group that never committed would read from the start.
    (_, never) = group_lag(pipeline.settings, pipeline.watched(), f"{pipeline.id}-never")
    assert (never.committed, never.end, never.lag) == (None, 5, 5)

    shown = cdc(pipeline, "lag", "--group", group)
    assert shown.returncode == 0, shown.stderr
    assert f"consumer group {group} on {pipeline.id}.<schema>.<table>" in shown.stdout
    shown_cells = cells(shown.stdout)
    behind = [row.pop() for row in shown_cells]
    assert shown_cells == [
        [f"public.{empty}", "no topic yet", "-", "-", "0"],
        [f"public.{empty}", "total", "", "", "0"],
        [f"public.{items}", "0", "2", "5", "3"],
        [f"public.{items}", "total", "", "", "3"],
        ["all tables", "total", "", "", "3"],
    ]
    assert behind[:2] == ["-", "-"]
    assert all(re.fullmatch(r"\d+s", b) for b in behind[2:]), behind
    assert f"replication slot {pipeline.id}: active, wal_status reserved" in shown.stdout
    # Without --group: the consumer's own group.
    default = cdc(pipeline, "lag", CDC_GROUP_ID=group)
    assert default.returncode == 0, default.stderr
    assert [row[:-1] for row in cells(default.stdout)] == shown_cells  # but for the time


def _op(msg: Message) -> str:
    body = payload(msg)
    return "tombstone" if body is None else str(body["op"])


def test_snapshot_backfills_existing_rows(pipeline: Pipeline) -> None:
    notes = pipeline.table("notes")
    pipeline.sql(f"CREATE TABLE {notes} (id int PRIMARY KEY, body text)")
    pipeline.write_file({notes: {}})
    pipeline.apply()
    pipeline.sql(f"INSERT INTO {notes} VALUES (1, 'a'), (2, 'b'), (3, 'c')")

    def reads(records: list[Message]) -> list[dict[str, Any]]:
        return [p for m in records if (p := payload(m)) and p["op"] == "r"]

    with RecordReader(pipeline.stack.kafka_bootstrap, [pipeline.topic(notes)]) as reader:
        streamed = reader.wait(lambda r: len(r) >= 3)
        assert [_op(m) for m in streamed] == ["c", "c", "c"]

        # A bare name is in public.
        done = cdc(pipeline, "snapshot", notes)
        assert done.returncode == 0, done.stderr
        found = re.search(rf"snapshot of public\.{notes} requested: signal (\S+)", done.stdout)
        assert found, done.stdout
        assert pipeline.sql("SELECT type FROM cdc.signal WHERE id = %s", (found[1],)) == [
            ("execute-snapshot",)
        ]
        reader.wait(lambda r: len(reads(r)) >= 3, timeout=90)
        # A change made after the backfill marks its end: no read arrives after it.
        pipeline.sql(f"INSERT INTO {notes} VALUES (4, 'd')")
        reader.wait(lambda r: any(p and p["after"]["id"] == 4 for p in map(payload, r)))
        backfill = reads(reader.records)
    assert sorted((p["after"]["id"], p["after"]["body"]) for p in backfill) == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
    ]
    assert {p["source"]["snapshot"] for p in backfill} == {"incremental"}

    unwatched = f"public.{pipeline.table('other')}"
    refused = cdc(pipeline, "snapshot", notes, unwatched)
    assert refused.returncode == 2
    assert f"{unwatched} is not a watched table (watched: public.{notes})" in refused.stderr
    assert "Traceback" not in refused.stderr


def _slot_pid(pipeline: Pipeline) -> int | None:
    rows = pipeline.sql(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (pipeline.id,)
    )
    return rows[0][0] if rows else None


def test_connector_status_and_restart(pipeline: Pipeline) -> None:
    things = pipeline.table("things")
    pipeline.sql(f"CREATE TABLE {things} (id int PRIMARY KEY)")
    pipeline.write_file({things: {}})
    pipeline.apply()

    status = cdc(pipeline, "connector", "status")
    assert status.returncode == 0, status.stderr
    assert f"connector {pipeline.name}" in status.stdout
    assert [row[:2] for row in cells(status.stdout)] == [
        ["connector", "RUNNING"],
        ["task 0", "RUNNING"],
    ]
    as_json = cdc(pipeline, "connector", "status", "--json")
    body = json.loads(as_json.stdout)
    assert body["name"] == pipeline.name
    assert [t["state"] for t in body["tasks"]] == ["RUNNING"]

    # Anything not RUNNING is shown and makes the command fail, for scripts and probes.
    connect = pipeline.stack.connect_url
    httpx.put(f"{connect}/connectors/{pipeline.name}/pause").raise_for_status()
    try:
        deadline = time.monotonic() + 30
        while (paused := cdc(pipeline, "connector", "status")).returncode == 0:
            assert time.monotonic() < deadline, paused.stdout
            time.sleep(0.5)
        assert paused.returncode == 1
        assert ["connector", "PAUSED"] in [row[:2] for row in cells(paused.stdout)]
    finally:
        httpx.put(f"{connect}/connectors/{pipeline.name}/resume").raise_for_status()
    ConnectClient(connect).wait_running(pipeline.name)

    old_pid = _slot_pid(pipeline)
    restarted = cdc(pipeline, "connector", "restart")
    assert restarted.returncode == 0, restarted.stderr
    assert "restarted: connector, task 0" in restarted.stdout
    assert [row[:2] for row in cells(restarted.stdout)] == [
        ["connector", "RUNNING"],
        ["task 0", "RUNNING"],
    ]
    after = ConnectClient(connect).status(pipeline.name)
    assert [after["connector"]["state"], *(t["state"] for t in after["tasks"])] == [
        "RUNNING",
        "RUNNING",
    ]
    # The task really restarted: a new walsender holds the replication slot.
    deadline = time.monotonic() + 60
    while (pid := _slot_pid(pipeline)) in (None, old_pid):
        assert time.monotonic() < deadline, f"slot still held by {pid}"
        time.sleep(0.3)

    nothing = cdc(pipeline, "connector", "restart", "--failed-only")
    assert nothing.returncode == 0, nothing.stderr
    assert "restarted: nothing (none FAILED)" in nothing.stdout


def test_settings_masks_secrets(pipeline: Pipeline) -> None:
    pg_password, sasl_password = f"pg-{uuid.uuid4()}", f"sasl-{uuid.uuid4()}"
    shown = cdc(
        pipeline,
        "settings",
        CDC_PG_PASSWORD=pg_password,
        CDC_KAFKA_SASL_PASSWORD=sasl_password,
    )
    assert shown.returncode == 0, shown.stderr
    for secret in (pg_password, sasl_password):
        assert secret not in shown.stdout + shown.stderr
    values = {row[0]: row[1] for row in cells(shown.stdout)}
    assert values["pg_password"] == MASK
    assert values["kafka_sasl_password"] == MASK
    assert values["kafka_bootstrap"] == pipeline.stack.kafka_bootstrap
    assert values["watched_tables"] == str(pipeline.file)
