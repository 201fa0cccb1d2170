"""How far behind the database a handler's effects are, while it runs: the age of the oldest
change fetched and not yet finished, per table (`cdc_oldest_unfinished_seconds`)."""

from __future__ import annotations

import threading
import time

import pytest

from cdc import Change, Context, on_change
from cdc.routing import Router, handlers_of
from cdc.testing import RunningConsumer
from tests.integration.conftest import Pipeline
from tests.waiting import eventually

pytestmark = pytest.mark.stack


def test_the_oldest_unfinished_change_ages_until_it_is_done(pipeline: Pipeline) -> None:
    table = pipeline.watch_new_table()
    started, release = threading.Event(), threading.Event()

    def slow(change: Change, ctx: Context) -> None:
        started.set()
        release.wait(60)

    handlers = handlers_of(on_change(table, ops="c")(slow))
    config = pipeline.stack.settings(watched_tables=pipeline.file, group_id=pipeline.id)
    watched = pipeline.watched()
    with RunningConsumer(config, watched, Router(handlers, watched.tables)) as consumer:
        registry = consumer.runtime.metrics.registry

        def age() -> float | None:
            labels = {"table": f"public.{table}"}
            return registry.get_sample_value("cdc_oldest_unfinished_seconds", labels)

        pipeline.sql(f"INSERT INTO {table} VALUES (1)")
        assert started.wait(60)
        time.sleep(2)
        waited = eventually(age, lambda a: a is not None and a >= 2)
        assert waited is not None
        assert waited < 60
        release.set()
        consumer.wait_for(table, "c")
        eventually(age, lambda a: a == 0)
