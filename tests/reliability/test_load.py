"""A sustained write load on PostgreSQL (the example application's mix) with the consumer
keeping up: its memory and its lag stay flat, and every effect is applied exactly once."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Pipeline
from tests.reliability.report import record, scaled
from tests.reliability.workload import POSTS, USERS, CdcRun, ExampleApp, Writer, finish, group_lag
from tests.waiting import eventually

pytestmark = [pytest.mark.stack, pytest.mark.reliability]

# Changes a second: well inside what one consumer handles on a 2-core machine that also runs
# the whole stack and the writer, so lag measures keeping up rather than capacity.
RATE = float(os.environ.get("CDC_RELIABILITY_RATE", "250"))
SAMPLE_S = 5.0


@pytest.mark.timeout(scaled(900, 1800))  # a full run writes for 10 minutes, then settles
def test_sustained_load_with_flat_memory_and_lag(pipeline: Pipeline, tmp_path: Path) -> None:
    minutes = scaled(1, 10)
    app = ExampleApp(pipeline)
    app.seed(USERS, POSTS)
    run = CdcRun(app, tmp_path / "run.log")
    eventually(run.ready, what="the consumer ready")
    # The connector's initial snapshot holds every row earlier tests left in the shared
    # tables: worked off first, so the samples measure the sustained load alone.
    t0, behind = time.monotonic(), [group_lag(app)]

    def caught_up() -> bool:
        time.sleep(SAMPLE_S)
        behind.append(group_lag(app))
        return behind[-2:] == [0, 0]  # twice in a row: not just between two snapshot batches

    eventually(caught_up, what="the initial snapshot worked off", timeout=600)
    catch_up = {"records_behind_at_most": max(behind), "s": round(time.monotonic() - t0, 1)}
    writer = Writer(app, rate=RATE, batch=10).start()
    started = time.monotonic()
    samples: list[tuple[float, float, int]] = []  # seconds in, RSS MB, records behind
    while (elapsed := time.monotonic() - started) < minutes * 60:
        time.sleep(SAMPLE_S)
        assert run.alive(), run.tail()
        samples.append((round(elapsed), round(run.rss_mb(), 1), group_lag(app)))
    written_s = time.monotonic() - started
    peak = run.rss_mb("VmHWM")
    found = finish(app, writer, [run], timeout=600)

    quarter = max(len(samples) // 4, 1)
    rss = [s[1] for s in samples]
    lag = [s[2] for s in samples]
    record(
        "load",
        initial_snapshot_catch_up=catch_up,
        minutes=round(written_s / 60, 1),
        target_changes_per_s=RATE,
        changes_per_s=round(writer.committed / written_s, 1),
        changes_written=writer.committed,
        comments_counted=found["comments_counted"],
        rss_mb_first_quarter=round(statistics.mean(rss[:quarter]), 1),
        rss_mb_last_quarter=round(statistics.mean(rss[-quarter:]), 1),
        peak_rss_mb=round(peak, 1),
        max_lag_records=max(lag),
        mean_lag_records=round(statistics.mean(lag), 1),
        lag_last_quarter_mean=round(statistics.mean(lag[-quarter:]), 1),
        samples=samples,
        lost=0,
    )
    # Flat memory: the last quarter of the run is no larger than the second quarter (once
    # pools, caches and buffers are warm) beyond noise.
    warm = rss[quarter : 2 * quarter] or rss[:quarter]
    assert statistics.mean(rss[-quarter:]) <= max(warm) * 1.15 + 10, samples
    # Flat lag: no backlog builds up; what is behind at the end is no more than in the
    # first half, give or take a few seconds of writes between commits.
    first_half = lag[: max(len(lag) // 2, 1)]
    assert statistics.mean(lag[-quarter:]) <= 2 * statistics.mean(first_half) + 5 * RATE, samples
