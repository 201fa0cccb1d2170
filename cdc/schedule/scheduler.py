"""The scheduler inside `cdc run`: one thread per process, and one process at a time doing the
work, the one holding a PostgreSQL advisory lock (on a connection of its own, so losing the
connection loses the lock and the work with it).

The leader moves due delayed events into the outbox, up to `BATCH` a transaction, and fires
due recurring schedules, each in one transaction with the row that remembers its last due
time (locked FOR UPDATE). Neither relies on the lock for correctness: a delayed row is moved
by the transaction that deletes it, and a schedule fires only by advancing its row, so even
two leaders could not fire anything twice. The others stand by and try the lock twice a
second, so a leader killed outright is replaced within about that. PostgreSQL down: an error
logged once per outage (``schedule.db_unreachable``), retried with backoff, and logged again
when back (``schedule.db_back``)."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
import structlog
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from cdc.outbox import emit
from cdc.routing.declared import Handler
from cdc.schedule.declare import Schedule, declared
from cdc.settings import Settings
from cdc.tables.config import WatchedTables
from cdc.tables.schedule_store import EVENT_NAMESPACE, Connection, Statements, create_tables

log = structlog.get_logger("cdc.schedule")

BATCH = 500  # delayed events moved per transaction
POLL_S = 0.5  # longest sleep of the leader (new delayed rows) and of a standby (the lock)
BACKOFF_MAX_S = 5.0


def lock_key(watched: WatchedTables) -> int:
    """The advisory lock's key: one scheduler per outbox table in a database."""
    assert watched.outbox is not None
    digest = hashlib.blake2b(f"cdc.schedule:{watched.outbox.table}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


@dataclass
class Counts:
    """What this process's scheduler did, for logs and tests."""

    moved: int = 0
    fired: dict[str, int] = field(default_factory=dict)
    leader: bool = False
    outages: int = 0


class CountsCollector:
    """The scheduler's counts as Prometheus series (on the consumer's endpoint)."""

    def __init__(self, counts: Counts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        c = self._counts
        yield GaugeMetricFamily(
            "cdc_scheduler_leader",
            "1 while this process holds the scheduler's advisory lock (one process does).",
            value=int(c.leader),
        )
        yield CounterMetricFamily(
            "cdc_scheduler_delivered",
            "Delayed events this process moved into the outbox at their time.",
            value=c.moved,
        )
        yield CounterMetricFamily(
            "cdc_scheduler_outages",
            "Times this process's scheduler found PostgreSQL unreachable.",
            value=c.outages,
        )
        fired = CounterMetricFamily(
            "cdc_schedule_fired",
            "Recurring events this process fired, by schedule.",
            labels=["schedule"],
        )
        for name, count in sorted(c.fired.items()):
            fired.add_metric([name], count)
        yield fired


class Scheduler:
    def __init__(
        self, settings: Settings, watched: WatchedTables, schedules: list[Schedule]
    ) -> None:
        self.settings = settings
        self.watched = watched
        self.schedules = schedules
        self.sql = Statements(watched)
        assert watched.outbox is not None
        self.outbox = watched.outbox.table
        self.key = lock_key(watched)
        self.counts = Counts()
        self._stop = threading.Event()
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._run, name="cdc-scheduler", daemon=True)

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                wait = self._turn()
                if backoff:
                    log.info("schedule.db_back")
                backoff = 0.0
            except psycopg.Error as exc:
                self._drop()
                if not backoff:
                    self.counts.outages += 1
                    log.error("schedule.db_unreachable", error=str(exc).strip(), leader=False)
                backoff = min(BACKOFF_MAX_S, max(0.5, backoff * 2))
                wait = backoff
            except Exception:  # a bug of ours must not end the thread silently
                self._drop()
                log.exception("schedule.failed")
                backoff = wait = BACKOFF_MAX_S
            self._stop.wait(wait)
        self._drop()

    def _connect(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.settings.pg_conninfo(),
                password=self.settings.pg_password.get_secret_value(),
                autocommit=True,
                connect_timeout=5,
                application_name="cdc-scheduler",
                # A leader cut off by the network is noticed, and its lock freed, in ~30 s.
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
        return self._conn

    def _drop(self) -> None:
        if self.counts.leader:
            log.warning("schedule.leader_lost")
        self.counts.leader = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _turn(self) -> float:
        """One turn: take the lock if free, do what is due; seconds until the next turn."""
        conn = self._connect()
        if not self.counts.leader:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            if not (row and row[0]):
                return POLL_S
            self.counts.leader = True
            self._prepare(conn)
            log.info("schedule.leader", schedules=len(self.schedules), pid=conn.info.backend_pid)
        while True:
            moved = self.sql.move_due(conn, BATCH)
            if moved.ids:
                self.counts.moved += len(moved.ids)
                log.info("schedule.delivered", events=len(moved.ids), late_s=round(moved.late_s, 3))
            if len(moved.ids) < BATCH or self._stop.is_set():
                break
        now = self.sql.now(conn)
        waits = [POLL_S, self.sql.seconds_to_next(conn) or POLL_S]
        for schedule in self.schedules:
            waits.append(self._fire(conn, schedule, now))
        return max(0.02, min(waits))  # never a busy loop on rows another locks

    def _prepare(self, conn: Connection) -> None:
        with conn.transaction():
            create_tables(conn, self.watched)
            now = self.sql.now(conn)
            for s in self.schedules:
                # A new schedule counts from now: its first due time is the next one.
                conn.execute(self.sql.register, (s.name, s.spec.text, now))

    def _fire(self, conn: Connection, schedule: Schedule, now: datetime) -> float:
        """Fire ``schedule`` if due; seconds until its next due time."""
        with conn.transaction():
            row = conn.execute(self.sql.lock_schedule, (schedule.name,)).fetchone()
            if row is None:  # its row was deleted by hand: start it afresh
                conn.execute(self.sql.register, (schedule.name, schedule.spec.text, now))
                row = (schedule.spec.text, now)
            last: datetime = row[1]
            due = schedule.spec.latest_due(last, now)
            if due is not None:
                when, missed = due
                event_id = uuid.uuid5(EVENT_NAMESPACE, f"{schedule.name}@{when.isoformat()}")
                emit(
                    conn,
                    schedule.aggregate_type,
                    schedule.name,
                    schedule.event,
                    schedule.payload(when, missed),
                    table=self.outbox,
                    event_id=event_id,
                )
                conn.execute(self.sql.advance, (when, schedule.name))
                last = when
        if due is not None:
            fired = self.counts.fired
            fired[schedule.name] = fired.get(schedule.name, 0) + 1
            log.info(
                "schedule.fired",
                schedule=schedule.name,
                event_type=schedule.event,
                due_at=due[0].isoformat(),
                missed=due[1],
                late_s=round((now - due[0]).total_seconds(), 3),
            )
        return (schedule.spec.next_after(last) - now).total_seconds()


class _Idle:
    """No outbox, so nothing to schedule."""

    counts = Counts()

    def stop(self, timeout: float = 10.0) -> None:
        pass


def start_scheduler(
    settings: Settings, watched: WatchedTables, handlers: list[Handler]
) -> Scheduler | _Idle:
    """The scheduler for ``cdc run``, started (idle without an outbox); `stop` it at the end."""
    schedules = declared(handlers, watched)
    if watched.outbox is None:
        return _Idle()
    return Scheduler(settings, watched, schedules).start()
