"""Recurring events on the real stack: a schedule of the handlers (``@every``) and one of the
watched-tables file fire once per due time across three `cdc run` processes, while the
scheduler's leader is SIGKILLed halfway. 75 s in the quick run; five minutes with
``CDC_RELIABILITY=full``."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from cdc.testing import RecordReader
from tests.integration.conftest import Pipeline
from tests.integration.test_schedule_delayed import (
    Consumer,
    header,
    leaders,
    prepare,
    schedule_list,
)
from tests.waiting import eventually

# Also in `make reliability`, at full length.
pytestmark = [pytest.mark.stack, pytest.mark.reliability]

RUN_S = 300 if os.environ.get("CDC_RELIABILITY") == "full" else 75

HANDLERS = """
from cdc import Context, DomainEvent, Fired, every, on_event


@every("3s", event="tick", ledger=True)
def tick(event: DomainEvent[Fired], ctx: Context) -> None:
    note(event, ctx)


@on_event("tock", model=Fired, ledger=True)
def tock(event: DomainEvent[Fired], ctx: Context) -> None:
    note(event, ctx)


def note(event: DomainEvent[Fired], ctx: Context) -> None:
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO {runs} (event_type, due_at, missed) VALUES (%s, %s, %s)",
            (event.type, event.payload.due_at, event.payload.missed),
        )
"""


def test_recurring_events_fire_once_per_due_time(pipeline: Pipeline, tmp_path: Path) -> None:
    runs = pipeline.table("runs")
    pipeline.sql(f"CREATE TABLE {runs} (event_type text, due_at timestamptz, missed int)")
    module = prepare(pipeline, tmp_path, HANDLERS, runs=runs)
    body = yaml.safe_load(pipeline.file.read_text())
    body["schedules"] = {"tock": {"every": "* * * * * */5", "event": "tock"}}  # seconds last
    pipeline.file.write_text(yaml.safe_dump(body))

    consumers = [Consumer(pipeline, tmp_path, module, n) for n in range(3)]
    try:
        (leader,) = eventually(lambda: leaders(consumers), lambda ls: len(ls) == 1, timeout=120)
        eventually(
            lambda: pipeline.sql(f"SELECT count(*) FROM {runs}")[0][0] >= 2,
            what="the first firings",
            timeout=120,
        )
        started = time.monotonic()
        time.sleep(RUN_S / 2)
        leader.proc.kill()
        leader.proc.wait(timeout=30)
        consumers.append(Consumer(pipeline, tmp_path, module, 3))
        time.sleep(RUN_S / 2)
        elapsed = time.monotonic() - started
    finally:
        for c in consumers:
            c.stop()
        outputs = "\n".join(c.log.read_text()[-3000:] for c in consumers)

    # Every event in Kafka, once per schedule and due time.
    topic = f"{pipeline.outbox_prefix}.schedule"
    with RecordReader(pipeline.stack.kafka_bootstrap, [topic]) as reader:
        quiet = time.monotonic() + 5
        reader.wait(lambda _: time.monotonic() > quiet, timeout=30)
    ids = [header(m, "id") for m in reader.records]
    # An event's id is its schedule's name and due time: distinct ids, no due time twice.
    assert len(ids) == len(set(ids)), outputs
    rows = pipeline.sql(f"SELECT event_type, due_at, missed FROM {runs} ORDER BY due_at")
    # The last firings can reach Kafka while the consumers stop, unhandled.
    assert 0 <= len(ids) - len(rows) <= 2, (len(rows), len(ids))
    for event_type, step in (("tick", 3), ("tock", 5)):
        due: list[datetime] = [r[1] for r in rows if r[0] == event_type]
        missed = [r[2] for r in rows if r[0] == event_type]
        assert len(due) == len(set(due)), f"{event_type} fired twice for a due time"
        # Contiguous: each due time the next one, or a gap the catch-up rule accounts for.
        for (before, after), skipped in zip(pairwise(due), missed[1:], strict=True):
            assert after - before == timedelta(seconds=step * (1 + skipped)), (before, after)
        assert all(d.timestamp() % step == 0 for d in due)
        assert len(due) >= elapsed / step - 2, (event_type, len(due), elapsed)
        print(f"{event_type}: {len(due)} firings in {elapsed:.0f} s, every {step} s")
    assert sum(c.logged("schedule.fired") for c in consumers) == len(ids)
    listing = schedule_list(pipeline, tmp_path, module)
    assert "2 recurring schedule(s)" in listing, listing
    for event_type in ("tick", "tock"):
        fired = sum(1 for m in reader.records if header(m, "eventType") == event_type)
        line = next(x for x in listing.splitlines() if f" {event_type} " in x)
        assert line.rstrip(" │").endswith(f" {fired}"), line
