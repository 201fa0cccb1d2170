"""Large changes on the real stack. Up to the watched-tables file's `max_record_bytes` they
reach a handler intact, in every encoding, and fit the dead-letter topic. One beyond it stops
the connector's task, and that is loud: `cdc check` and `cdc connector status` fail, the
running consumer logs it and fails `/readyz`, each naming the connector, the error and the
remedy, which works."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import textwrap
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from cdc import Change, Context
from cdc.findings import apply_fix
from cdc.routing import DeadLetter, Router, handlers_of, on_change
from cdc.testing import RunningConsumer, read_records
from tests.integration.conftest import Pipeline
from tests.integration.test_kill import start
from tests.integration.test_ops import cdc

pytestmark = pytest.mark.stack

MB = 1_000_000
T = TypeVar("T")


def digest(value: str | bytes | None) -> str | None:
    if value is None:
        return None
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).hexdigest()


@pytest.mark.parametrize("encoding", ["json", "json-noschema", "avro"])
def test_changes_up_to_16_mb_reach_a_handler_intact(pipeline: Pipeline, encoding: str) -> None:
    table = pipeline.table("big")
    pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, body text, blob bytea)")
    pipeline.write_file({table: {}}, encoding=encoding)
    pipeline.apply()
    seen: dict[int, tuple[str | None, str | None]] = {}

    @on_change(f"public.{table}")
    def keep(change: Change[Any], ctx: Context) -> None:
        row = change.row
        seen[row["id"]] = (digest(row["body"]), digest(row["blob"]))
        if row["id"] == 2:
            raise DeadLetter("a parked 16 MB change must fit in the dead-letter topic too")

    # Random hex and random bytes: nothing for the compression to shrink. The bytea is 16 MB
    # once base64 in JSON.
    rows = {
        1: (secrets.token_hex(650_000), None),  # 1.3 MB: over Kafka's default 1 MB
        2: (secrets.token_hex(8 * MB), None),  # 16 MB of text
        3: ("small", secrets.token_bytes(12 * MB)),
    }
    settings = pipeline.stack.settings(
        watched_tables=pipeline.file, group_id=pipeline.id, http_port=None
    )
    with RunningConsumer(settings, pipeline.watched(), Router(handlers_of(keep))) as consumer:
        for row_id, (body, blob) in rows.items():
            pipeline.sql(f"INSERT INTO {table} VALUES (%s, %s, %s)", (row_id, body, blob))
        for row_id in rows:
            handled = consumer.wait_for(
                table, "c", where=lambda c, i=row_id: c.row["id"] == i, timeout=120
            )
            assert bool(handled.parked) is (row_id == 2)
    bootstrap = pipeline.stack.kafka_bootstrap
    source = read_records(bootstrap, [pipeline.topic(table)], 2)[1]  # row 2
    (parked,) = read_records(bootstrap, [f"{pipeline.id}.dlq"], 1)
    assert parked.value() == source.value()
    assert len(source.value() or b"") > 16 * MB
    # Without schemas nothing says the column is bytea: it arrives as Debezium's base64 text.
    sent = {
        i: (body, base64.b64encode(blob).decode() if blob and encoding == "json-noschema" else blob)
        for i, (body, blob) in rows.items()
    }
    assert seen == {i: (digest(body), digest(blob)) for i, (body, blob) in sent.items()}


def eventually(probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 90) -> T:
    deadline = time.monotonic() + timeout
    while not done(value := probe()):
        assert time.monotonic() < deadline, f"still {value!r} after {timeout}s"
        time.sleep(0.5)
    return value


def log_lines(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines `cdc run` wrote so far."""
    return [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]


def http_port(log: Path) -> int:
    """The port of `cdc run`'s HTTP endpoint, once it serves."""
    serving = eventually(
        lambda: [x for x in log_lines(log) if x["event"] == "endpoint.serving"], bool
    )
    return int(serving[0]["port"])


@pytest.mark.parametrize("encoding", ["json", "json-noschema", "avro"])
def test_a_change_over_the_limit_is_loud_until_the_limit_is_raised(
    pipeline: Pipeline, tmp_path: Path, encoding: str
) -> None:
    table = pipeline.table("big")
    pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, body text)")
    pipeline.write_file({table: {}}, max_record_bytes=1_048_576, encoding=encoding)
    pipeline.apply()
    (tmp_path / "big_handlers.py").write_text(
        textwrap.dedent(f"""
            from cdc import on_change

            @on_change("public.{table}")
            def big(change, ctx):
                ctx.log.info("big.handled", id=change.row["id"], length=len(change.row["body"]))
        """)
    )
    consumers: list[subprocess.Popen[str]] = []

    def run_consumer(log: Path) -> str:
        """Start `cdc run`; return its /readyz URL."""
        consumers.append(
            start(pipeline, log, "big_handlers", tmp_path, CDC_CAPTURE_CHECK_INTERVAL_S="1")
        )
        return f"http://127.0.0.1:{http_port(log)}/readyz"

    try:
        readyz = run_consumer(tmp_path / "first.log")
        lines = partial(log_lines, tmp_path / "first.log")
        eventually(lambda: httpx.get(readyz).status_code, lambda s: s == 200)

        pipeline.sql(f"INSERT INTO {table} VALUES (1, %s)", (secrets.token_hex(650_000),))

        # The consumer says so: one log line naming the connector, the error and the remedy.
        stopped = eventually(
            lambda: [x for x in lines() if x["event"] == "capture.stopped"], lambda s: bool(s)
        )
        (line,) = stopped
        assert line["connector"] == pipeline.name
        assert line["check"] == "task"
        assert line["subject"] == f"connector {pipeline.name} task 0"
        assert "RecordTooLargeException" in line["problem"]
        assert "\n" not in line["problem"]
        assert "connector.max_record_bytes (1048576 bytes)" in line["remedy"]
        assert line["remedy"].endswith(f"then {apply_fix(str(pipeline.file))}")
        ready = httpx.get(readyz)
        assert ready.status_code == 503
        assert f"capture of connector {pipeline.name} stopped" in ready.text
        assert "RecordTooLargeException" in ready.text
        metrics = httpx.get(readyz.replace("/readyz", "/metrics")).text
        assert f'cdc_capture_problems{{check="task",connector="{pipeline.name}"}} 1.0' in metrics

        check = cdc(pipeline, "check", "--handlers", "big_handlers", PYTHONPATH=str(tmp_path))
        assert check.returncode == 1, check.stdout + check.stderr
        assert f"error: connector {pipeline.name} task 0: FAILED: " in check.stdout
        assert "RecordTooLargeException" in check.stdout
        assert "raise it in" in check.stdout
        status = cdc(pipeline, "connector", "status")
        assert status.returncode == 1
        assert "FAILED" in status.stdout
        assert f"connector {pipeline.name} task 0: FAILED: " in status.stdout
        assert "connector.max_record_bytes (1048576 bytes)" in status.stdout
        # A restart alone fails again: the change is still there, still too large.
        again = cdc(pipeline, "connector", "restart")
        assert again.returncode == 1
        assert "restarted, but it did not stay RUNNING" in again.stdout
        assert "connector.max_record_bytes (1048576 bytes)" in again.stdout

        # A consumer started now starts (it may have records to finish) and says so at once.
        consumers.pop().terminate()
        readyz = run_consumer(tmp_path / "second.log")
        lines = partial(log_lines, tmp_path / "second.log")
        assert "refusing to start" not in (tmp_path / "second.log").read_text()
        eventually(lambda: [x["event"] for x in lines()], lambda e: "capture.stopped" in e)
        assert httpx.get(readyz).status_code == 503

        # The remedy it names.
        body = yaml.safe_load(pipeline.file.read_text())
        body["connector"]["max_record_bytes"] = 2 * 1_048_576
        pipeline.file.write_text(yaml.safe_dump(body))
        applied = cdc(pipeline, "connector", "apply")  # restarts the failed task
        assert applied.returncode == 0, applied.stdout + applied.stderr
        handled = eventually(
            lambda: [x for x in lines() if x["event"] == "big.handled"], lambda h: bool(h)
        )
        assert [(x["id"], x["length"]) for x in handled] == [(1, 1_300_000)]
        eventually(lambda: [x["event"] for x in lines()], lambda e: "capture.resumed" in e)
        eventually(lambda: httpx.get(readyz).status_code, lambda s: s == 200)
    finally:
        for consumer in consumers:
            consumer.terminate()
            consumer.wait(60)
