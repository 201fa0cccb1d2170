"""The replication slot, read as the application role: healthy while the connector streams;
WAL held by a paused connector warned about; a slot lost to `max_slot_wal_keep_size` or
dropped by hand is an error in `cdc check`, the capture watcher (log, metric, `/readyz`'s
reason) and `cdc lag`, with the remedy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client import generate_latest

from cdc import Change, Context, on_change
from cdc.capture_health import read_capture_health
from cdc.check import Severity, run_check
from cdc.routing import Router, handlers_of
from cdc.runtime.capture_watch import CaptureWatcher
from cdc.runtime.metrics import Probes
from cdc.runtime.process_metrics import ProcessMetrics
from cdc.slot_health import slot_line
from cdc.stack.probes import connect_superuser
from cdc.testing import RunningConsumer
from tests.integration.conftest import Pipeline
from tests.integration.test_ops import cdc
from tests.waiting import eventually

pytestmark = pytest.mark.stack


@pytest.fixture
def su(pipeline: Pipeline) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    s = pipeline.stack
    with connect_superuser(s.pg_host, s.pg_port, s.pg_superuser_password, s.app_database) as conn:
        yield conn


def watched_pipeline(pipeline: Pipeline, **connector: Any) -> str:
    table = pipeline.table("items")
    pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    pipeline.write_file({table: {}}, **connector)
    pipeline.apply()
    return table


def slot_state(su: psycopg.Connection[tuple[Any, ...]], slot: str) -> tuple[Any, ...] | None:
    return su.execute(
        "SELECT active, wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()


def stop_connector(pipeline: Pipeline, su: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Stop the connector's task, and wait until it has let its slot go."""
    pipeline.connect.stop(pipeline.name)
    eventually(lambda: slot_state(su, pipeline.id), lambda s: s is not None and not s[0])


def write_wal(su: psycopg.Connection[tuple[Any, ...]], megabytes: int) -> None:
    """WAL of about ``megabytes``, across segments, with nothing any connector watches."""
    su.execute("CREATE TEMP TABLE IF NOT EXISTS ballast (v text)")
    for _ in range(megabytes // 8):
        su.execute("INSERT INTO ballast SELECT repeat('x', 1000) FROM generate_series(1, 8000)")
        su.execute("SELECT pg_switch_wal()")
    su.execute("TRUNCATE ballast")


def lose_slot(su: psycopg.Connection[tuple[Any, ...]], slot: str) -> None:
    """Let PostgreSQL invalidate the (inactive) slot: max_slot_wal_keep_size lets it remove
    the WAL the slot holds at the next checkpoint."""
    su.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '16MB'")
    su.execute("SELECT pg_reload_conf()")
    try:
        write_wal(su, 64)
        su.execute("CHECKPOINT")
        eventually(lambda: slot_state(su, slot), lambda s: s is not None and s[1] == "lost")
    finally:
        su.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
        su.execute("SELECT pg_reload_conf()")


def test_a_streaming_slot_is_healthy_and_shown(pipeline: Pipeline) -> None:
    watched_pipeline(pipeline)
    report = run_check([], pipeline.watched(), pipeline.settings)
    assert not [f for f in report.findings if f.subject.startswith("replication slot")]
    health = read_capture_health(pipeline.watched(), pipeline.settings, str(pipeline.file))
    assert health.slot is not None
    assert (health.slot.exists, health.slot.active, health.slot.wal_status) == (
        True,
        True,
        "reserved",
    )
    assert health.slot.safe_wal_size is None  # max_slot_wal_keep_size is not set
    line = slot_line(pipeline.settings, pipeline.id)
    assert line.startswith(f"replication slot {pipeline.id}: active, wal_status reserved, ")


def test_held_wal_is_warned_about_and_a_lost_slot_is_an_error(
    pipeline: Pipeline, su: psycopg.Connection[tuple[Any, ...]]
) -> None:
    watched_pipeline(pipeline)
    stop_connector(pipeline, su)
    write_wal(su, 40)

    # Stopped: the slot holds WAL and nobody reads it. Warnings, not errors: nothing is lost.
    settings = pipeline.settings.model_copy(update={"slot_wal_warn_bytes": 16 * 1024**2})
    report = run_check([], pipeline.watched(), settings)
    subject = f"replication slot {pipeline.id}"
    warnings = [f for f in report.findings if f.subject == subject]
    assert {f.severity for f in warnings} == {Severity.WARNING}
    (warning,) = warnings
    assert warning.problem.startswith("holds ")
    assert "of WAL (over slot_wal_warn_bytes, 16.0 MiB)" in warning.problem

    lose_slot(su, pipeline.id)

    report = run_check([], pipeline.watched(), pipeline.settings)
    (lost,) = [f for f in report.errors if f.subject == subject]
    assert lost.problem.startswith("is lost (wal_status lost")
    assert lost.fix == (
        f"run `cdc connector recover --tables {pipeline.file}`: it re-reads "
        f"public.{pipeline.table('items')}"
    )

    # The consumer's watcher: the same error (which fails /readyz), and the metrics.
    metrics, probes = ProcessMetrics(), Probes()
    probes.fetching = True
    watcher = CaptureWatcher(pipeline.settings, pipeline.watched(), metrics, probes)
    health = watcher.check()
    assert [(p.check, p.subject) for p in health.problems if p.check == "slot"] == [
        ("slot", subject)
    ]
    ready, reason = probes.ready()
    assert not ready
    assert f"{subject}: is lost" in reason
    exposed = generate_latest(metrics.registry).decode()
    labels = f'connector="{pipeline.name}",slot="{pipeline.id}"'
    assert f"cdc_slot_lost{{{labels}}} 1.0" in exposed
    assert f"cdc_slot_active{{{labels}}} 0.0" in exposed
    assert f'cdc_capture_problems{{check="slot",connector="{pipeline.name}"}} 1.0' in exposed
    assert slot_line(pipeline.settings, pipeline.id) == f"replication slot {pipeline.id}: LOST"


def test_a_slot_dropped_by_hand_is_an_error(
    pipeline: Pipeline, su: psycopg.Connection[tuple[Any, ...]]
) -> None:
    watched_pipeline(pipeline)
    stop_connector(pipeline, su)
    su.execute("SELECT pg_drop_replication_slot(%s)", (pipeline.id,))

    report = run_check([], pipeline.watched(), pipeline.settings)
    (missing,) = [f for f in report.errors if f.subject == f"replication slot {pipeline.id}"]
    assert missing.problem.startswith(f"does not exist while connector {pipeline.name}")
    health = read_capture_health(pipeline.watched(), pipeline.settings, str(pipeline.file))
    # Beside the connector this test stopped to drop the slot: the slot.
    assert sorted((p.check, p.subject) for p in health.problems) == [
        ("connector", f"connector {pipeline.name}"),
        ("slot", f"replication slot {pipeline.id}"),
    ]
    assert slot_line(pipeline.settings, pipeline.id).endswith(": does not exist")


@pytest.mark.parametrize(
    ("mode", "says"),
    [("initial", "initial snapshot (initial)"), ("no_data", "incremental snapshot")],
)
def test_recover_makes_a_new_slot_and_re_reads_what_was_missed(
    pipeline: Pipeline, su: psycopg.Connection[tuple[Any, ...]], mode: str, says: str
) -> None:
    """The runbook's recovery, as a command: rows written while the slot was lost arrive
    again as snapshot reads (the connector's own initial snapshot, or an incremental one it
    is asked for), and capture goes on from the new slot."""
    table = watched_pipeline(pipeline, snapshot_mode=mode)
    assert "healthy: nothing to recover" in cdc(pipeline, "connector", "recover").stdout

    seen: list[tuple[str, int]] = []

    def keep(change: Change, ctx: Context) -> None:
        assert change.after is not None
        seen.append((change.op.value, change.after["id"]))

    handlers = handlers_of(on_change(table, ops="c", snapshot_reads=True)(keep))
    watched = pipeline.watched()
    config = pipeline.stack.settings(watched_tables=pipeline.file, group_id=pipeline.id)
    with RunningConsumer(config, watched, Router(handlers, watched.tables)) as consumer:
        pipeline.sql(f"INSERT INTO {table} VALUES (1, 'before')")
        consumer.wait_for(table, "c")
        stop_connector(pipeline, su)
        pipeline.sql(f"INSERT INTO {table} VALUES (2, 'while stopped'), (3, 'while stopped')")
        lose_slot(su, pipeline.id)

        done = cdc(pipeline, "connector", "recover")
        assert done.returncode == 0, done.stderr
        assert f"replication slot {pipeline.id} was lost, dropped and made again; {says}" in (
            done.stdout
        )
        assert f"re-reads 3 row(s): public.{table} 3" in done.stdout
        pipeline.sql(f"INSERT INTO {table} VALUES (4, 'after')")
        for row_id in (1, 2, 3):
            consumer.wait_for(
                table, "r", lambda c, i=row_id: c.after is not None and c.after["id"] == i
            )
        consumer.wait_for(table, "c", lambda c: c.after is not None and c.after["id"] == 4)
    # Rows 2 and 3 were written into WAL the lost slot held: only the snapshot brings them.
    assert ("c", 2) not in seen
    assert {("r", 2), ("r", 3), ("c", 4)} <= set(seen)
    health = read_capture_health(pipeline.watched(), pipeline.settings, str(pipeline.file))
    assert health.problems == []
    assert health.slot is not None
    assert health.slot.active
