"""Faults during a run of the example application under a steady write load: the consumer
SIGKILLed at random moments, the broker, Kafka Connect and PostgreSQL crashed and restarted,
the group scaled from one consumer to three and back. Each time, every effect ends up what
the source rows imply: nothing lost, nothing applied twice."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from cdc.connect import ConnectClient
from cdc.testing import RunningStack
from tests.integration.conftest import Pipeline
from tests.reliability.report import record, scaled
from tests.reliability.workload import (
    POSTS,
    USERS,
    CdcRun,
    ExampleApp,
    Writer,
    count_log,
    finish,
    task_running,
)
from tests.waiting import eventually

pytestmark = [pytest.mark.stack, pytest.mark.reliability]

# Longer than a handler's attempts last (5 attempts: about 4-8 s of backoff), so an outage
# that was blamed on the changes would dead-letter them.
DOWN_S = 15.0


def test_sigkill_at_random_moments(pipeline: Pipeline, tmp_path: Path) -> None:
    kills, changes = scaled(5, 20), scaled(10_000, 100_000)
    app = ExampleApp(pipeline)
    app.seed(USERS, POSTS)
    rnd = random.Random(20)
    # A run gets partitions once the killed one's session has expired (10 s), then works
    # for a random while. Paced so the writes span the kills: each run dies mid-stream.
    lifetime = (12.0, 22.0)
    writer = Writer(app, rate=changes / (kills * sum(lifetime) / 2), batch=50, limit=changes)
    writer.start()
    runs: list[CdcRun] = []
    lifetimes, handled = [], []
    started = time.monotonic()
    for i in range(kills):
        run = CdcRun(app, tmp_path / f"run{i}.log")
        runs.append(run)
        lifetimes.append(round(rnd.uniform(*lifetime), 1))
        time.sleep(lifetimes[-1])
        assert run.alive(), run.tail()
        run.kill()
        handled.append(count_log([run.log], "handler.done"))
    final = CdcRun(app, tmp_path / "final.log")
    writer.wait(timeout=600)
    found = finish(app, writer, [final], timeout=900)
    logs = [r.log for r in [*runs, final]]
    record(
        "sigkill",
        kills=kills,
        lifetimes_s=lifetimes,
        handler_runs_before_each_kill=handled,
        changes_written=writer.committed + USERS + POSTS,
        comments_written=found["comments"],
        comments_counted=found["comments_counted"],
        email_changes=found["email_changes"],
        posts_with_workflow=found["posts"],
        notifications=found["notifications"],
        audit_rows=found["audit_rows"],
        redeliveries_skipped_by_ledger=count_log(logs, "handler.duplicate"),
        duplicates_applied=0,
        lost=0,
        minutes=round((time.monotonic() - started) / 60, 1),
    )
    # The kills landed mid-work, and changes counted before a kill but not yet committed
    # came again and were seen and skipped.
    assert sum(1 for n in handled if n > 0) >= kills // 2, handled
    assert count_log(logs, "handler.duplicate") > 0


@pytest.mark.parametrize("component", ["kafka", "connect", "postgres"])
def test_restarts_under_load(
    component: str, cdc_running_stack: RunningStack, pipeline: Pipeline, tmp_path: Path
) -> None:
    """``component`` SIGKILLed, left down for a while and started again (in a full run: then
    also stopped cleanly) while changes are written and handled. Nothing is dead-lettered:
    an outage is waited out, never blamed on the changes."""
    app = ExampleApp(pipeline)
    app.seed(USERS, POSTS)
    # A small in-flight window keeps fetching paused much of the time, so a session lost
    # during the outage is lost while paused (regained partitions must fetch again).
    run = CdcRun(app, tmp_path / "run.log", CDC_MAX_IN_FLIGHT="50")
    writer = Writer(app, rate=scaled(150, 300), batch=10).start()
    connect = ConnectClient(pipeline.stack.connect_url)
    survived = []
    started = time.monotonic()
    for crash in (True, False)[: scaled(1, 2)]:
        time.sleep(scaled(8, 20))
        before = writer.committed
        t0 = time.monotonic()
        cdc_running_stack.restart(component, crash=crash, down_s=DOWN_S)
        survived.append(
            {"how": "SIGKILL" if crash else "clean stop", "down_s": round(time.monotonic() - t0, 1)}
        )
        assert run.alive(), run.tail()
        # Debezium's task is back and capturing from its slot; writes go on.
        eventually(lambda: task_running(connect, pipeline.name), what=f"the task after {component}")
        eventually(lambda b=before: writer.committed > b + 50, what="writes after the restart")
    time.sleep(scaled(8, 20))
    found = finish(app, writer, [run], timeout=600)
    record(
        f"restart_{component}",
        restarts=survived,
        changes_written=writer.committed + USERS + POSTS,
        writer_transactions_cut_off=writer.uncertain,
        comments_written=found["comments"],
        comments_counted=found["comments_counted"],
        redeliveries_skipped_by_ledger=count_log([run.log], "handler.duplicate"),
        handler_retries=count_log([run.log], "handler.retry"),
        handler_waits_for_the_database=count_log([run.log], "handler.db_unreachable"),
        dead_lettered=count_log([run.log], "handler.dead_letter")
        + count_log([run.log], "handler.gave_up"),
        lost=0,
        minutes=round((time.monotonic() - started) / 60, 1),
    )
    assert count_log([run.log], "handler.gave_up") == 0, run.tail()
    assert count_log([run.log], "handler.dead_letter") == 0, run.tail()


def test_scale_one_three_one(pipeline: Pipeline, tmp_path: Path) -> None:
    partitions = 6
    app = ExampleApp(pipeline, partitions=partitions)
    app.seed(USERS, POSTS)
    writer = Writer(app, rate=scaled(150, 300), batch=10).start()
    table_partitions = partitions * len(app.topics)

    first = CdcRun(app, tmp_path / "first.log")
    phases = []
    # The outbox topics (one partition each) come on top of the tables'.
    eventually(lambda: first.owned() >= table_partitions, what="one consumer owning everything")
    phases.append([first.owned()])
    time.sleep(scaled(5, 20))
    more = [CdcRun(app, tmp_path / f"more{i}.log") for i in range(2)]
    runs = [first, *more]
    eventually(lambda: all(r.owned() > 0 for r in runs), what="three consumers sharing")
    time.sleep(scaled(5, 20))
    phases.append([r.owned() for r in runs])
    for run in more:
        assert run.stop() == 0, run.tail()
    eventually(lambda: first.owned() >= table_partitions, what="one consumer again")
    phases.append([first.owned()])
    time.sleep(scaled(5, 20))
    found = finish(app, writer, [first], timeout=600)
    logs = [r.log for r in runs]
    record(
        "scale",
        partitions_per_table=partitions,
        assigned_per_phase=phases,
        changes_written=writer.committed + USERS + POSTS,
        comments_written=found["comments"],
        comments_counted=found["comments_counted"],
        redeliveries_skipped_by_ledger=count_log(logs, "handler.duplicate"),
        lost=0,
    )
    # The three shared every partition (the outbox topic may have joined meanwhile).
    assert sum(phases[1]) >= table_partitions
