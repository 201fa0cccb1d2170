"""Delayed events on the real stack, with three `cdc run` processes: each arrives within a
second of its time, once, although the scheduler's leader is SIGKILLed and PostgreSQL is
crashed and restarted while the events wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdc import emit
from cdc.connect import ConnectClient
from cdc.testing import RecordReader
from cdc.testing.stack import RunningStack
from tests.integration.conftest import Pipeline
from tests.integration.test_run import cdc
from tests.waiting import eventually

pytestmark = pytest.mark.stack

HANDLERS = """
from cdc import Context, DomainEvent, on_event


@on_event("{event}", ledger=True)
def arrived(event: DomainEvent, ctx: Context) -> None:
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO {arrivals} (event_id, at) VALUES (%s, clock_timestamp())", (event.id,)
        )
"""


class Consumer:
    """`cdc run` as a process of its own, logging to a file."""

    def __init__(self, pipeline: Pipeline, tmp: Path, module: str, n: int, **env: str) -> None:
        self.log = tmp / f"run-{n}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdc", "run", "--no-check"],
            env={
                **os.environ,
                **pipeline.stack.env(),
                "CDC_WATCHED_TABLES": str(pipeline.file),
                "CDC_HANDLERS": module,
                "CDC_GROUP_ID": pipeline.id,
                "CDC_HTTP_PORT": "0",
                "PYTHONPATH": str(tmp),
                **env,
            },
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
        )

    def logged(self, event: str) -> int:
        return self.log.read_text().count(f'"{event}"')

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def schedule_list(pipeline: Pipeline, tmp: Path, module: str) -> str:
    """`cdc schedule list`'s output (wide, unfolded)."""
    proc = cdc(pipeline, tmp, module, "schedule", "list")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    return out


def prepare(pipeline: Pipeline, tmp: Path, handlers: str, **names: str) -> str:
    """An outbox of the pipeline's own, applied; the handlers module written: its name."""
    pipeline.write_file({}, outbox={"table": f"public.{pipeline.id}_outbox"})
    pipeline.apply()
    module = f"handlers_{pipeline.id}"
    (tmp / f"{module}.py").write_text(textwrap.dedent(handlers.format(**names)))
    return module


def leaders(consumers: list[Consumer]) -> list[Consumer]:
    """The consumers whose scheduler took the lock last and has not lost it since."""
    return [
        c
        for c in consumers
        if c.proc.poll() is None and c.logged("schedule.leader") > c.logged("schedule.leader_lost")
    ]


def test_delayed_events_survive_a_kill_and_a_restart(
    pipeline: Pipeline, tmp_path: Path, cdc_running_stack: RunningStack
) -> None:
    arrivals, event = pipeline.table("arrivals"), "reminder-due"
    pipeline.sql(f"CREATE TABLE {arrivals} (event_id text, at timestamptz)")
    module = prepare(pipeline, tmp_path, HANDLERS, event=event, arrivals=arrivals)
    outbox = f"public.{pipeline.id}_outbox"

    def send(**when: Any) -> str:
        return str(emit(pipeline.db, "reminder", 1, event, {"n": 1}, table=outbox, **when))

    consumers = [Consumer(pipeline, tmp_path, module, n) for n in range(3)]
    try:
        # Warm-up: an event now, through the whole path, so the topic and group are ready.
        first = send()
        eventually(
            lambda: pipeline.sql(f"SELECT 1 FROM {arrivals} WHERE event_id = %s", (first,)),
            what="the first event",
            timeout=120,
        )
        (leader,) = eventually(lambda: leaders(consumers), lambda ls: len(ls) == 1)

        # Due 35-45 s from now, some by delay (the database's clock), some by time.
        now = pipeline.sql("SELECT clock_timestamp()")[0][0]
        waiting = [send(deliver_after=timedelta(seconds=35 + 2 * i)) for i in range(3)]
        waiting += [send(deliver_at=now + timedelta(seconds=40 + 2 * i)) for i in range(3)]
        due = dict(
            pipeline.sql(f"SELECT id::text, extract(epoch FROM deliver_at) FROM {outbox}_scheduled")
        )
        assert set(due) == set(waiting)
        listing = schedule_list(pipeline, tmp_path, module)
        assert f"6 delayed event(s) in {outbox}_scheduled" in listing, listing
        assert listing.count(event) == 6, listing

        # The leader dies outright; a replacement keeps three consumers running.
        leader.proc.kill()
        leader.proc.wait(timeout=30)
        consumers.append(Consumer(pipeline, tmp_path, module, 3))
        eventually(lambda: leaders(consumers), lambda ls: len(ls) == 1, what="a new leader")
        # PostgreSQL crashes and comes back while the events wait.
        cdc_running_stack.restart("postgres", crash=True, down_s=2.0)
        pipeline.db.close()
        pipeline.db = psycopg.connect(
            pipeline.settings.pg_conninfo(), autocommit=True, password=pipeline.stack.app_password
        )
        connect = ConnectClient(pipeline.stack.connect_url)
        eventually(
            lambda: connect.status(pipeline.name)["tasks"][0]["state"] == "RUNNING",
            what="the connector after the restart",
        )
        eventually(lambda: leaders(consumers), lambda ls: len(ls) == 1, what="a leader again")
        assert datetime.now(UTC) < now + timedelta(seconds=35), "the drill took too long"

        rows = eventually(
            lambda: pipeline.sql(
                f"SELECT a.event_id, extract(epoch FROM a.at) FROM {arrivals} a "
                "WHERE a.event_id = ANY(%s)",
                (waiting,),
            ),
            lambda rs: len(rs) >= len(waiting),
            what="the delayed events",
            timeout=120,
        )
        time.sleep(3)  # anything arriving twice would be here by now
    finally:
        for c in consumers:
            c.stop()
        outputs = "\n".join(c.log.read_text()[-3000:] for c in consumers)

    # Once each: one handler run, one record in Kafka.
    assert sorted(r[0] for r in rows) == sorted(waiting), outputs
    with RecordReader(pipeline.stack.kafka_bootstrap, [f"{pipeline.outbox_prefix}.reminder"]) as r:
        r.wait(lambda rs: len(rs) >= 1 + len(waiting), timeout=30)
        quiet = time.monotonic() + 3  # anything sent twice would be read by then
        r.wait(lambda _: time.monotonic() > quiet, timeout=30)
    ids = [header(m, "id") for m in r.records]
    assert sorted(ids) == sorted([first, *waiting]), ids
    assert pipeline.sql(f"SELECT count(*) FROM {outbox}_scheduled") == [(0,)]
    # Within a second of its time, never early.
    lateness = sorted(round(float(at) - float(due[event_id]), 3) for event_id, at in rows)
    print(f"delayed events late by (s): {lateness}")  # the figure for the closing note
    assert all(0 <= s < 1.0 for s in lateness), (lateness, outputs)
    # The outage was seen and said.
    assert sum(c.logged("schedule.db_unreachable") for c in consumers) >= 1, outputs


def header(message: Any, name: str) -> str:
    value = dict(message.headers() or [])[name]
    return bytes(value or b"").decode().strip('"')
