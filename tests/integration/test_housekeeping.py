"""A running consumer prunes the ledger every `ledger_prune_interval_s`, not only at start."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from cdc import Change, Context, on_change
from cdc.routing import Router, handlers_of
from cdc.testing import RunningConsumer
from tests.integration.conftest import Pipeline
from tests.waiting import eventually

pytestmark = pytest.mark.stack


def test_the_ledger_is_pruned_while_the_consumer_runs(pipeline: Pipeline) -> None:
    table = pipeline.watch_new_table()

    def once(change: Change, ctx: Context) -> None:
        pass

    handlers = handlers_of(on_change(table, ops="c", ledger=True)(once))
    ledger = f"{pipeline.id}_ledger"
    config = pipeline.stack.settings(
        watched_tables=pipeline.file,
        group_id=pipeline.id,
        ledger_table=ledger,
        ledger_retention_days=14,
        ledger_prune_interval_s=0.5,
    )
    watched = pipeline.watched()
    with RunningConsumer(config, watched, Router(handlers, watched.tables)) as consumer:
        pipeline.sql(f"INSERT INTO {table} VALUES (1)")
        consumer.wait_for(table, "c")  # the ledger is in use: its table exists
        assert pipeline.sql(f"SELECT count(*) FROM {ledger}") == [(0,)]  # no write, no row
        # Rows from weeks ago (a long-running consumer's), and one from a day ago.
        pipeline.sql(
            f"INSERT INTO {ledger} (handler, change_key, processed_at) "
            "SELECT 'old', 'k' || i, now() - interval '20 days' FROM generate_series(1, 3) i "
            "UNION ALL SELECT 'recent', 'k', now() - interval '1 day'"
        )
        eventually(
            lambda: pipeline.sql(f"SELECT handler, count(*) FROM {ledger} GROUP BY 1 ORDER BY 1"),
            lambda rows: rows == [("recent", 1)],
        )
        exposed = generate_latest(consumer.runtime.process_metrics.registry).decode()
    assert "cdc_ledger_pruned_rows_total 3.0" in exposed
    pipeline.sql(f"DROP TABLE {ledger}")
