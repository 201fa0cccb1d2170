"""Per-test pipelines on the shared real stack: own tables, connector, slot, publication and
topic prefix, torn down afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from cdc.connect import ConnectClient, apply_connector
from cdc.settings import Settings
from cdc.stack.endpoints import StackEndpoints
from cdc.stack.local import LocalStack
from cdc.tables.config import ConnectorOptions, WatchedTables, load_watched_tables
from cdc.testing.pipeline import remove_connector

pytestmark = pytest.mark.stack


class Pipeline:
    def __init__(self, stack: StackEndpoints, tmp: Path) -> None:
        self.stack = stack
        self.id = f"t{uuid.uuid4().hex[:8]}"
        self.file = tmp / "cdc.yaml"
        self.settings: Settings = stack.settings(watched_tables=self.file)
        self.connect = ConnectClient(stack.connect_url)
        self.db = psycopg.connect(
            self.settings.pg_conninfo(), autocommit=True, password=stack.app_password
        )
        self.name = self.id

    def table(self, short: str) -> str:
        return f"{self.id}_{short}"

    def partitioned_table(self, short: str, *regions: str) -> str:
        """A table (id, region, v) partitioned by list of region, one partition per region,
        each named ``<table>_<region>``."""
        table = self.table(short)
        self.sql(
            f"CREATE TABLE {table} (id int, region text, v text, PRIMARY KEY (id, region)) "
            "PARTITION BY LIST (region)"
        )
        for region in regions:
            self.sql(
                f"CREATE TABLE {table}_{region} PARTITION OF {table} FOR VALUES IN ('{region}')"
            )
        return table

    def write_file(
        self,
        tables: dict[str, dict[str, Any]],
        *,
        outbox: dict[str, Any] | None = None,
        workloads: dict[str, Any] | None = None,
        **connector: Any,
    ) -> None:
        """``outbox``: the `outbox:` options; its topics get this pipeline's prefix."""
        body: dict[str, Any] = {
            "connector": {
                "name": self.name,
                "topic_prefix": self.id,
                "slot": self.id,
                "publication": self.id,
                **connector,
            },
            "tables": {
                name if "." in name else f"public.{name}": opts for name, opts in tables.items()
            },
        }
        if outbox is not None:
            body["outbox"] = {"topic_prefix": self.outbox_prefix, **outbox}
        if workloads:
            body["workloads"] = workloads
        self.file.write_text(yaml.safe_dump(body))

    def watch_new_table(self, short: str = "items", columns: str = "id int PRIMARY KEY") -> str:
        """Create a table of this pipeline's, watch it alone and apply: its name."""
        table = self.table(short)
        self.sql(f"CREATE TABLE {table} ({columns})")
        self.write_file({table: {}})
        self.apply()
        return table

    def watched(self) -> WatchedTables:
        return load_watched_tables(self.file)

    def apply(self) -> str:
        return apply_connector(self.watched(), self.settings)

    def put_as_strimzi(self, resource: dict[str, Any]) -> None:
        """What Strimzi's operator does with a ``KafkaConnector``: its class, task count and
        config into Connect; then wait for the task."""
        spec = resource["spec"]
        config = {"connector.class": spec["class"], "tasks.max": str(spec["tasksMax"])}
        self.connect.put_config(self.name, config | spec["config"])
        self.connect.wait_running(self.name, 90)

    def topic(self, table: str) -> str:
        return f"{self.id}.public.{table}"

    @property
    def outbox_prefix(self) -> str:
        return f"{self.id}_outbox"

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = self.db.execute(statement, params)
        return cur.fetchall() if cur.description else []

    def close(self) -> None:
        remove_connector(
            self.stack,
            ConnectorOptions(
                name=self.name, topic_prefix=self.id, slot=self.id, publication=self.id
            ),
        )
        self.db.close()


@pytest.fixture
def pipeline(cdc_stack: StackEndpoints, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(cdc_stack, tmp_path)
    try:
        yield p
    finally:
        p.close()


@contextmanager
def private_cluster(
    prefix: str, brokers: int = 3, connect_workers: int = 2, exactly_once: bool = False
) -> Iterator[LocalStack]:
    """A stack in a state directory of their own (by default three KRaft brokers and two
    Connect workers), destroyed afterwards."""
    # Not pytest's tmp_path: as root, PostgreSQL runs as another user and cannot enter it.
    stack = LocalStack(Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        # Seven JVMs start beside the session's own stack on two cores: give them time.
        stack.up(
            timeout=600.0,
            brokers=brokers,
            connect_workers=connect_workers,
            exactly_once=exactly_once,
        )
        yield stack
    finally:
        keep = os.environ.get("CDC_KEEP_STACK_LOGS")  # a directory to keep the logs in
        if keep:
            shutil.copytree(stack.logs, Path(keep) / stack.dir.name, dirs_exist_ok=True)
        stack.destroy()
        shutil.rmtree(stack.dir, ignore_errors=True)
