"""The example application on the real stack: its schema, its cdc.yaml (under a connector of
its own) and its handlers, run by the consumer in this process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdc.routing import discover
from cdc.schedule import start_scheduler
from cdc.stack.endpoints import StackEndpoints
from cdc.testing import Pipelines, RunningConsumer

ROOT = Path(__file__).parents[2]


class App:
    def __init__(self, pipelines: Pipelines, consumer: RunningConsumer, db: Any) -> None:
        self.pipelines = pipelines
        self.consumer = consumer
        self.db = db

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = self.db.execute(statement, params)
        return cur.fetchall() if cur.description else []

    def one(self, statement: str, params: Any = None) -> Any:
        rows = self.sql(statement, params)
        assert len(rows) == 1, rows
        return rows[0][0] if len(rows[0]) == 1 else rows[0]


@pytest.fixture(scope="module")
def app(cdc_stack: StackEndpoints) -> Iterator[App]:
    pipelines = Pipelines(cdc_stack)
    try:
        consumer = pipelines.start(
            ROOT / "cdc.yaml", ["handlers"], schema=[ROOT / "handlers" / "schema.sql"]
        )
        settings = consumer.settings
        # What `cdc run` starts beside the consumer: delayed events (the review reminder).
        scheduler = start_scheduler(settings, consumer.watched, discover(["handlers"]))
        try:
            with psycopg.connect(
                settings.pg_conninfo(), password=cdc_stack.app_password, autocommit=True
            ) as db:
                yield App(pipelines, consumer, db)
        finally:
            scheduler.stop()
    finally:
        pipelines.close()
