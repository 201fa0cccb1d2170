"""Kafka Connect REST client and ``cdc connector apply``."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

import httpx
import psycopg
import structlog

from cdc.errors import ConfigError, ConnectError
from cdc.settings import MASK, Settings
from cdc.tables.config import WatchedTables
from cdc.tables.connector import (
    DROP_NULLABLE_DEFAULTS,
    DatabaseEndpoint,
    connector_config,
    topic_prefixes,
)
from cdc.tables.sql import (
    find_problems,
    prepare_tables,
    publication_exists,
    published_tables,
    request_incremental_snapshot,
    sync_publication,
)
from cdc.topics import raise_topic_limits

log = structlog.get_logger("cdc.connect")

ApplyResult = Literal["created", "updated", "unchanged"]
# How long a restarted task must stay RUNNING to count as running: one that meets the change
# that failed it fails again within seconds of starting.
STEADY_S = 5.0


class ConnectClient:
    """Kafka Connect's REST API. ``url`` may name several workers of one group, comma
    separated: any of them answers for the group (forwarding to its leader what needs it),
    so a request goes to the one that answered last, and on to the next while a worker
    cannot be reached (killed, restarting, cut off)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()]
        self._http = httpx.Client(timeout=timeout)
        self._at = 0  # the worker that answered last

    def _call(
        self, method: str, path: str, json: Any = None, ok: tuple[int, ...] = (200, 201, 202, 204)
    ) -> httpx.Response:
        failed: httpx.TransportError | None = None
        for i in range(len(self.urls)):
            at = (self._at + i) % len(self.urls)
            try:
                response = self._http.request(method, self.urls[at] + path, json=json)
            except httpx.TransportError as exc:
                failed = exc
                log.warning("connect.unreachable", url=self.urls[at], error=str(exc) or repr(exc))
                continue
            self._at = at
            if response.status_code not in ok:
                raise ConnectError(method, path, response.status_code, response.text[:2000])
            return response
        assert failed is not None
        raise failed

    def get_config(self, name: str) -> dict[str, str] | None:
        """The connector's config as it was put (without the ``name`` Connect adds), or None."""
        response = self._call("GET", f"/connectors/{name}/config", ok=(200, 404))
        if response.status_code == 404:
            return None
        config = dict(response.json())
        config.pop("name", None)
        return config

    def close(self) -> None:
        self._http.close()

    def put_config(self, name: str, config: dict[str, str]) -> dict[str, Any]:
        return dict(self._call("PUT", f"/connectors/{name}/config", json=config).json())

    def validate(self, name: str, connector_class: str, config: dict[str, str]) -> list[str]:
        """Connect's own validation of a config: each error as ``key: message``."""
        plugin = connector_class.rsplit(".", 1)[-1]
        body = self._call(
            "PUT", f"/connector-plugins/{plugin}/config/validate", json={"name": name, **config}
        ).json()
        return [
            f"{c['value']['name']}: {err}"
            for c in body.get("configs", [])
            for err in c["value"].get("errors", [])
        ]

    def status(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/connectors/{name}/status").json())

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/connectors/{name}", ok=(200, 204, 404))

    def stop(self, name: str) -> None:
        """Shut the connector's tasks down, keeping its config and offsets, until `resume`
        (a paused task keeps its replication connection; a stopped one lets the slot go)."""
        self._call("PUT", f"/connectors/{name}/stop")

    def resume(self, name: str) -> None:
        self._call("PUT", f"/connectors/{name}/resume")

    def reset_offsets(self, name: str) -> None:
        """Forget where the (stopped) connector read to: it starts as new when resumed."""
        self._call("DELETE", f"/connectors/{name}/offsets")

    def restart(self, name: str, only_failed: bool = False) -> dict[str, Any]:
        """Restart the connector and its tasks, or only those FAILED. Returns Connect's plan:
        the status with what it restarts as RESTARTING."""
        flag = "true" if only_failed else "false"
        response = self._call(
            "POST", f"/connectors/{name}/restart?includeTasks=true&onlyFailed={flag}"
        )
        # Workers older than Kafka 3.0 ignore the parameters and answer without a body.
        return dict(response.json()) if response.content else {}

    def restart_and_wait(
        self,
        name: str,
        only_failed: bool = False,
        timeout: float = 60.0,
        settle: float = 10.0,
        steady: float = 0.0,
    ) -> tuple[list[str], dict[str, Any]]:
        """Restart, then wait until everything is RUNNING (for ``steady`` seconds). Returns
        the instances restarted (``connector``, ``task 0``...) and the status after."""
        plan = self.restart(name, only_failed)
        restarting = [s.instance for s in status_rows(plan) if s.state == "RESTARTING"]
        # A distributed worker restarts asynchronously: until the status shows the restart,
        # it is the old one, RUNNING or FAILED.
        deadline = time.monotonic() + settle
        while restarting and time.monotonic() < deadline:
            now = {s.instance: s.state for s in status_rows(self.status(name))}
            if any(now.get(i) != "RUNNING" for i in restarting):
                break
            time.sleep(0.2)
        # Nothing restarted (none FAILED with only_failed): nothing that could fail again.
        steady = steady if restarting else 0.0
        return restarting, self.wait_running(name, timeout, grace=settle, steady=steady)

    def wait_running(
        self, name: str, timeout: float = 60.0, grace: float = 0.0, steady: float = 0.0
    ) -> dict[str, Any]:
        """Block until the connector and all its tasks are RUNNING, and have stayed so for
        ``steady`` seconds (a task that meets the change that failed it fails again a few
        seconds after it starts); fail fast on FAILED (after ``grace`` seconds, during which a
        restart may still show the old state)."""
        start = time.monotonic()
        deadline = start + timeout + steady
        status: dict[str, Any] = {}
        running_since: float | None = None
        while time.monotonic() < deadline:
            response = self._call("GET", f"/connectors/{name}/status", ok=(200, 404))
            now = time.monotonic()
            if response.status_code == 200:
                status = response.json()
                failed = [r for r in status_rows(status) if r.state == "FAILED"]
                if failed and (running_since is not None or now - start >= grace):
                    raise ConnectError(
                        "GET",
                        f"/connectors/{name}/status",
                        200,
                        f"{failed[0].instance} FAILED: {failed[0].trace} (the whole trace: "
                        "`cdc connector status --json`)",
                    )
                rows = status_rows(status)
                if len(rows) > 1 and all(r.state == "RUNNING" for r in rows):
                    running_since = now if running_since is None else running_since
                    if now - running_since >= steady:
                        return status
                else:
                    running_since = None
            time.sleep(0.5)
        raise ConnectError(
            "GET", f"/connectors/{name}/status", 0, f"not RUNNING after {timeout:.0f}s: {status}"
        )


class InstanceStatus(NamedTuple):
    """The connector or one of its tasks, as Connect reports it."""

    instance: str  # "connector", "task 0", ...
    state: str
    worker: str
    trace: str  # a FAILED instance's stack trace in one line (`summarise_trace`), else ""


def status_rows(status: dict[str, Any]) -> list[InstanceStatus]:
    """The connector, then each task, from a ``/status`` (or restart plan) body."""
    entries = [("connector", status["connector"])] if "connector" in status else []
    entries += [(f"task {t['id']}", t) for t in status.get("tasks", [])]
    return [
        InstanceStatus(
            instance,
            str(entry.get("state", "")),
            str(entry.get("worker_id", "")),
            summarise_trace(str(entry.get("trace", ""))) if entry.get("state") == "FAILED" else "",
        )
        for instance, entry in entries
    ]


def summarise_trace(trace: str, limit: int = 600) -> str:
    """A Java stack trace in one line: its root cause, then its first line."""
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    if not lines:
        return "no trace"
    causes = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by:")]
    summary = lines[0] if not causes else f"{causes[-1]} (in {lines[0]})"
    return summary if len(summary) <= limit else summary[: limit - 3] + "..."


def watched_names(watched: WatchedTables, names: Iterable[str], source: str) -> list[str]:
    """``schema.table`` for each of ``names`` (a bare table is in ``public``), once each; a
    table the file does not watch is a ConfigError naming it."""
    wanted = list(dict.fromkeys(n if "." in n else f"public.{n}" for n in names))
    watching = ", ".join(watched.tables)
    unknown = [
        f"{n} is not a watched table (watched: {watching})"
        for n in wanted
        if n not in watched.tables
    ]
    if unknown:
        raise ConfigError(source, unknown)
    return wanted


def request_snapshot(watched: WatchedTables, settings: Settings, tables: list[str]) -> str:
    """Ask the connector, through the signal table, for an incremental snapshot (a backfill
    as ``op: r`` events) of ``tables``; returns the signal id. The connector reads the
    signal from the WAL, so it acts on it whenever it streams."""
    with connect_database(settings) as conn:
        return request_incremental_snapshot(conn, watched, tables)


def render_config(
    watched: WatchedTables, settings: Settings, masked: bool = False
) -> dict[str, str]:
    password = settings.debezium_password_ref
    if settings.debezium_password_inline:
        password = MASK if masked else settings.debezium_password.get_secret_value()
    endpoint = DatabaseEndpoint(
        host=settings.connect_pg_host or settings.pg_host,
        port=settings.connect_pg_port or settings.pg_port,
        database=settings.pg_database,
        user=settings.debezium_user,
        password=password,
        registry_url=settings.connect_registry_url or settings.registry_url,
    )
    return connector_config(watched, endpoint)


def _slot_pid(conn: psycopg.Connection[Any], slot: str) -> int | None:
    row = conn.execute(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()
    return None if row is None else row[0]


def apply_connector(
    watched: WatchedTables, settings: Settings, timeout: float = 90.0
) -> ApplyResult:
    """Make the database and the connector match the file. Everything is checked before
    anything changes; every step is idempotent."""
    opts = watched.connector
    client = ConnectClient(settings.connect_url)
    desired = render_config(watched, settings)
    with connect_database(settings) as conn:
        problems = find_problems(conn, watched, settings.debezium_user)
        if not problems:
            problems = [
                _hinted(p) for p in client.validate(opts.name, desired["connector.class"], desired)
            ]
        if problems:
            raise ConfigError(str(settings.watched_tables), problems)
        with conn.transaction():
            prepare_tables(conn, watched, settings.debezium_user)
            if not publication_exists(conn, opts.publication):
                sync_publication(conn, watched)
        # Topics Debezium made under a lower limit take the change that needs the new one
        # before the task sends it.
        raise_topic_limits(settings, topic_prefixes(watched), watched.limits.topic)
        current = client.get_config(opts.name)
        if current == desired:
            result: ApplyResult = "unchanged"
            failed = _has_failed_task(client.status(opts.name))
            if failed:
                # The SQL above may have fixed what made it fail; or not, and it fails again.
                client.restart(opts.name)
            client.wait_running(opts.name, timeout, grace=10.0, steady=STEADY_S if failed else 0)
        else:
            old_pid = _slot_pid(conn, opts.slot)
            client.put_config(opts.name, desired)
            result = "created" if current is None else "updated"
            # Until the restart shows, the status may still be the old task's.
            client.wait_running(opts.name, timeout, grace=10.0)
            if current is not None:
                _wait_slot_reopened(conn, client, opts.name, opts.slot, old_pid, timeout)
        # Tables join the publication only once a task with the new include list streams:
        # the old task would read their changes, drop them as unwatched and move past them.
        before = published_tables(conn, opts.publication)
        with conn.transaction():
            sync_publication(conn, watched)
        added = sorted(set(watched.tables) - before)
        if added and current is not None and opts.snapshot_mode != "no_data":
            # Streaming only sees changes from now on; the rows already in a newly watched
            # table come through an incremental snapshot (op r, snapshot "incremental").
            signal = request_incremental_snapshot(conn, watched, added)
            log.info(
                "connector.snapshot_requested", connector=opts.name, tables=added, signal=signal
            )
    log.info("connector.apply", connector=opts.name, result=result, tables=sorted(watched.tables))
    return result


def prepare_database(watched: WatchedTables, settings: Settings) -> None:
    """The database half of ``apply``, for where something else puts the connector config
    (a Strimzi ``KafkaConnector``): tables, replica identity, grants and the publication.
    Safe to run from several pods at once."""
    with connect_database(settings) as conn:
        problems = find_problems(conn, watched, settings.debezium_user)
        if problems:
            raise ConfigError(str(settings.watched_tables), problems)
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                (f"cdc.prepare.{watched.connector.publication}",),
            )
            prepare_tables(conn, watched, settings.debezium_user)
            sync_publication(conn, watched)
    log.info("database.prepare", publication=watched.connector.publication)


def connect_database(
    settings: Settings, timeout: int | None = None
) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection as the application role (``timeout``: to connect, seconds)."""
    return psycopg.connect(
        settings.pg_conninfo(),
        autocommit=True,
        password=settings.pg_password.get_secret_value(),
        connect_timeout=timeout,
    )


def _hinted(problem: str) -> str:
    """Connect's complaint, with what to do when it is our transform that it lacks."""
    if f"Class {DROP_NULLABLE_DEFAULTS} could not be found" not in problem:
        return problem
    return (
        f"{problem} The Avro encoding needs cdc's transforms in the worker's plugin path: "
        "`cdc stack fetch` builds them into <JVM home>/plugins/cdc-transforms "
        "(deploy/connect.Dockerfile adds them to the Debezium image)."
    )


def _has_failed_task(status: dict[str, Any]) -> bool:
    states = [status["connector"]["state"], *(t["state"] for t in status.get("tasks", []))]
    return "FAILED" in states


def _wait_slot_reopened(
    conn: psycopg.Connection[Any],
    client: ConnectClient,
    name: str,
    slot: str,
    old_pid: int | None,
    timeout: float,
) -> None:
    """The restarted task streams once a new backend holds the slot."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _slot_pid(conn, slot)
        if pid is not None and pid != old_pid:
            return
        client.wait_running(name, timeout=max(1.0, deadline - time.monotonic()))
        time.sleep(0.3)
    raise ConnectError(
        "GET",
        "pg_replication_slots",
        0,
        f"no task reopened replication slot {slot!r} within {timeout:.0f}s",
    )
