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

from cdc.capture_health import read_capture_health
from cdc.check import Severity, run_check
from cdc.runtime.capture_watch import CaptureWatcher
from cdc.runtime.metrics import Metrics, Probes
from cdc.slot_health import slot_line
from cdc.stack.probes import connect_superuser
from tests.integration.conftest import Pipeline
from tests.waiting import eventually

pytestmark = pytest.mark.stack


@pytest.fixture
def su(pipeline: Pipeline) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    s = pipeline.stack
    with connect_superuser(s.pg_host, s.pg_port, s.pg_superuser_password, s.app_database) as conn:
        yield conn


def watched_pipeline(pipeline: Pipeline) -> str:
    table = pipeline.table("items")
    pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    pipeline.write_file({table: {}})
    pipeline.apply()
    return table


def slot_state(su: psycopg.Connection[tuple[Any, ...]], slot: str) -> tuple[Any, ...] | None:
    return su.execute(
        "SELECT active, wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()


def write_wal(su: psycopg.Connection[tuple[Any, ...]], megabytes: int) -> None:
    """WAL of about ``megabytes``, across segments, with nothing any connector watches."""
    su.execute("CREATE TEMP TABLE IF NOT EXISTS ballast (v text)")
    for _ in range(megabytes // 8):
        su.execute("INSERT INTO ballast SELECT repeat('x', 1000) FROM generate_series(1, 8000)")
        su.execute("SELECT pg_switch_wal()")
    su.execute("TRUNCATE ballast")


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
    pipeline.connect.stop(pipeline.name)
    eventually(lambda: slot_state(su, pipeline.id), lambda s: s is not None and not s[0])
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

    # max_slot_wal_keep_size lets PostgreSQL drop the WAL it holds at the next checkpoint.
    su.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '16MB'")
    su.execute("SELECT pg_reload_conf()")
    try:
        write_wal(su, 64)
        su.execute("CHECKPOINT")
        eventually(lambda: slot_state(su, pipeline.id), lambda s: s is not None and s[1] == "lost")
    finally:
        su.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
        su.execute("SELECT pg_reload_conf()")

    report = run_check([], pipeline.watched(), pipeline.settings)
    (lost,) = [f for f in report.errors if f.subject == subject]
    assert lost.problem.startswith("is lost (wal_status lost")
    assert f"pg_drop_replication_slot('{pipeline.id}')" in lost.fix
    assert f"snapshot public.{pipeline.table('items')}" in lost.fix

    # The consumer's watcher: the same error (which fails /readyz), and the metrics.
    metrics, probes = Metrics(), Probes()
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
    pipeline.connect.stop(pipeline.name)
    eventually(lambda: slot_state(su, pipeline.id), lambda s: s is not None and not s[0])
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
