"""A connector of one's own on a shared stack: unique names in, everything removed after."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cdc.connect import ConnectClient, apply_connector
from cdc.stack.endpoints import StackEndpoints
from cdc.stack.probes import connect_superuser
from cdc.tables.config import ConnectorOptions, WatchedTables, load_watched_tables
from cdc.testing.consumer import RunningConsumer


def isolated(watched: WatchedTables, suffix: str) -> WatchedTables:
    """The same tables under a connector, topic prefix, slot and publication of their own, and
    the outbox's events on topics of their own."""
    c = watched.connector
    connector = c.model_copy(
        update={
            "name": f"{c.name}_{suffix}",
            "topic_prefix": f"{c.topic_prefix}_{suffix}",
            "slot": f"{c.slot}_{suffix}",
            "publication": f"{c.publication}_{suffix}",
        }
    )
    update: dict[str, Any] = {"connector": connector}
    if watched.outbox is not None:
        prefix = f"{watched.outbox.topic_prefix}_{suffix}"
        update["outbox"] = watched.outbox.model_copy(update={"topic_prefix": prefix})
    return watched.model_copy(update=update)


def remove_connector(stack: StackEndpoints, c: ConnectorOptions, timeout: float = 30.0) -> None:
    """Delete the connector, then its replication slot once released, and its publication."""
    ConnectClient(stack.connect_url).delete(c.name)
    with connect_superuser(
        stack.pg_host, stack.pg_port, stack.pg_superuser_password, stack.app_database
    ) as su:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = su.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (c.slot,)
            ).fetchone()
            if row is None:
                break
            if not row[0]:
                su.execute("SELECT pg_drop_replication_slot(%s)", (c.slot,))
                break
            time.sleep(0.3)
        su.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(c.publication)))


class Pipelines:
    """Start consumers on the real stack, each with its own connector (unless ``isolate`` is
    off) and consumer group; ``close()`` stops them and removes their connectors."""

    def __init__(self, stack: StackEndpoints) -> None:
        self.stack = stack
        self._started: list[tuple[RunningConsumer, WatchedTables | None]] = []

    def start(
        self,
        watched: WatchedTables | Path = Path("cdc.yaml"),
        handlers: Sequence[str] | None = None,
        *,
        schema: Sequence[Path] = (),
        isolate: bool = True,
        apply: bool = True,
        **settings: Any,
    ) -> RunningConsumer:
        """Run the ``schema`` SQL files as the application role, apply the connector for
        ``watched`` and start a consumer with ``handlers`` (default: ``settings.handlers``)."""
        if isinstance(watched, Path):
            settings.setdefault("watched_tables", watched)  # what errors and logs name
            watched = load_watched_tables(watched)
        suffix = uuid.uuid4().hex[:8]
        if isolate:
            watched = isolated(watched, suffix)
        config = self.stack.settings(group_id=f"cdc-test-{suffix}", **settings)
        for path in schema:
            with psycopg.connect(
                config.pg_conninfo(), password=self.stack.app_password, autocommit=True
            ) as conn:
                conn.execute(path.read_bytes())
        owned = None
        if apply:
            apply_connector(watched, config)
            owned = watched if isolate else None
        consumer = RunningConsumer(config, watched, handlers).start()
        self._started.append((consumer, owned))
        return consumer

    def close(self) -> None:
        while self._started:
            consumer, owned = self._started.pop()
            consumer.stop()
            if owned is not None:
                remove_connector(self.stack, owned.connector)
