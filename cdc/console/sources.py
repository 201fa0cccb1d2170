"""What the console shows, read where the commands read it: the orders in force (the control
topic, folded as every consumer folds it), each workload's lag and throughput (its group's
committed offsets, sampled), the connector and its slot, and the dead-letter topic."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import structlog
from confluent_kafka import KafkaException

from cdc.connect import ConnectClient, InstanceStatus, connect_database, status_rows
from cdc.decoding import decoder_for
from cdc.dlq import DeadLetters, read_dead_letters
from cdc.errors import CdcError
from cdc.events.change import Change
from cdc.lag import workload_lag
from cdc.masking import Masking, Shown, pretty
from cdc.routing import Handler
from cdc.routing.declared import EventHandler, TableHandler
from cdc.runtime.control import EVERY, Controls, ControlTail, Order, control_topic
from cdc.runtime.dead_letter import Parked
from cdc.runtime.held_keys import Hold
from cdc.runtime.workloads import workload_names
from cdc.settings import Settings
from cdc.slot_health import SlotHealth, describe, read_slot
from cdc.tables.config import WatchedTables

log = structlog.get_logger("cdc.console")

SAMPLE_S = 5.0  # how often each workload's committed offsets are read
WINDOW_S = 60.0  # throughput: committed records over the last minute


@dataclass
class WorkloadView:
    name: str
    group: str = ""
    handlers: list[str] = field(default_factory=list)
    paused: dict[str, Order] = field(default_factory=dict)  # handler or `*` -> order
    lag: int | None = None  # None: not read yet
    behind_ms: int | None = None  # the oldest unread record's Kafka timestamp
    per_s: float | None = None  # committed records a second, over the window
    error: str = ""


@dataclass(frozen=True)
class HandlerView:
    name: str
    workload: str
    reads: str
    paused: Order | None


@dataclass(frozen=True)
class ConnectorView:
    name: str
    instances: list[InstanceStatus]
    slot: SlotHealth | None
    slot_line: str
    error: str = ""


@dataclass(frozen=True)
class RecordView:
    """A dead letter as a person may see it: its key, payload and reason masked."""

    parked: Parked
    replayed: bool
    key: str
    payload: str
    reason: str
    headers: list[tuple[str, str]]


def reads(handler: Handler) -> str:
    if isinstance(handler, TableHandler):
        return handler.table
    if isinstance(handler, EventHandler):
        return f"event {handler.event_type}"
    return ", ".join(sorted(handler.tables))


class Sources:
    """The console's reading side, shared by its pages; `start` it, then `stop`."""

    def __init__(self, settings: Settings, watched: WatchedTables, found: list[Handler]) -> None:
        self.settings = settings
        self.watched = watched
        self.handlers = found
        self.masking = Masking(watched)
        self.workloads = workload_names(found, watched)
        self.controls = {name: Controls(name) for name in self.workloads}
        topic = control_topic(watched.connector.topic_prefix)
        self._tails = [
            ControlTail(settings, topic, c, watched.limits) for c in self.controls.values()
        ]
        self._views = {name: WorkloadView(name) for name in self.workloads}
        self._samples: dict[str, deque[tuple[float, int]]] = {n: deque() for n in self.workloads}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="cdc-console-lag", daemon=True)
        self._decoder = decoder_for(watched.connector.encoding, settings.registry_url)

    def start(self) -> Sources:
        for tail in self._tails:
            tail.start()
        self._sampler.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for tail in self._tails:
            tail.stop()

    # -- workloads and handlers ------------------------------------------------------------

    def workload_views(self) -> list[WorkloadView]:
        out = []
        for name in self.workloads:
            view = self._views[name]
            out.append(
                WorkloadView(
                    name,
                    view.group,
                    [h.name for h in self.handlers if h.workload == name],
                    dict(self.controls[name].paused),
                    view.lag,
                    view.behind_ms,
                    view.per_s,
                    view.error,
                )
            )
        return out

    def handler_views(self) -> list[HandlerView]:
        out = []
        for h in sorted(self.handlers, key=lambda h: (h.workload, h.name)):
            paused = self.controls[h.workload].paused
            out.append(
                HandlerView(h.name, h.workload, reads(h), paused.get(h.name) or paused.get(EVERY))
            )
        return out

    def handler(self, name: str) -> Handler | None:
        return next((h for h in self.handlers if h.name == name), None)

    def skips(self) -> list[tuple[str, str, int, int, str, Order]]:
        """Every skip in force: workload, topic, partition, offset, handler, order."""
        return sorted(
            (workload, topic, partition, offset, handler, order)
            for workload, controls in self.controls.items()
            for (topic, partition, offset), orders in dict(controls.skips).items()
            for handler, order in dict(orders).items()
        )

    def wait_for(self, workload: str, until: Any, timeout: float = 10.0) -> bool:
        """Wait until the orders the consumers fold say ``until(controls)``."""
        deadline = time.monotonic() + timeout
        while not until(self.controls[workload]):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name in self.workloads:
                self._sample_one(name)
            self._stop.wait(SAMPLE_S)

    def _sample_one(self, name: str) -> None:
        view = self._views[name]
        try:
            group, rows = workload_lag(self.settings, self.watched, name, timeout=5.0)
        except (KafkaException, CdcError) as exc:
            view.error = f"Kafka: {exc}"
            return
        now = time.monotonic()
        committed = sum(r.committed or 0 for r in rows)
        samples = self._samples[name]
        samples.append((now, committed))
        while samples and now - samples[0][0] > WINDOW_S:
            samples.popleft()
        first_at, first = samples[0]
        view.group, view.error = group, ""
        view.lag = sum(r.lag for r in rows)
        view.behind_ms = min((r.oldest_unread_ms for r in rows if r.oldest_unread_ms), default=None)
        view.per_s = max(0, committed - first) / (now - first_at) if now > first_at else None

    # -- the connector and its slot --------------------------------------------------------

    def connector(self) -> ConnectorView:
        name = self.watched.connector.name
        slot_name = self.watched.connector.slot
        instances: list[InstanceStatus] = []
        error = ""
        if not self.settings.connect_url:
            error = "Kafka Connect is managed elsewhere (CDC_CONNECT_URL is empty)"
        else:
            client = ConnectClient(self.settings.connect_url, timeout=5.0)
            try:
                instances = status_rows(client.status(name))
            except (CdcError, httpx.HTTPError) as exc:
                error = str(exc)
            finally:
                client.close()
        try:
            with connect_database(self.settings, timeout=5) as conn:
                slot: SlotHealth | None = read_slot(conn, slot_name)
            line = describe(slot) if slot else ""
        except psycopg.Error as exc:
            slot, line = None, f"PostgreSQL cannot be read: {str(exc).strip()}"
        return ConnectorView(name, instances, slot, line, error)

    # -- the dead-letter topic -------------------------------------------------------------

    def dead_letters(self, workload: str) -> DeadLetters:
        return read_dead_letters(self.settings, self.watched, workload)

    def record(self, dlq: DeadLetters, parked: Parked) -> RecordView:
        """``parked`` decoded where it can be, its sensitive values masked everywhere."""
        key, payload = self._decoded(parked)
        hidden = key.hidden | payload.hidden
        return RecordView(
            parked,
            dlq.replayed(parked),
            key.text,
            payload.text,
            Masking.text(parked.reason, hidden),
            [
                (k, Masking.text((v or b"").decode(errors="replace")[:500], hidden))
                for k, v in parked.headers
            ],
        )

    def summary(self, parked: Parked) -> tuple[str, str]:
        """A listing's key (on one line) and reason, masked by the record's own values."""
        key, payload = self._decoded(parked, indent=None)
        hidden = key.hidden | payload.hidden
        return key.text[:160], Masking.text(parked.reason, hidden)[:300]

    def held(self, dlq: DeadLetters) -> list[tuple[str, str, Hold, str]]:
        """The held keys, oldest first: handler, source topic, hold, and its first park's
        reason masked as that record's listing masks it."""
        at = {(p.partition, p.offset): p for p in dlq.records}
        out = []
        for (handler, source, _key), hold in sorted(dlq.held.items(), key=lambda kv: kv[1].first):
            first = at.get((hold.partition, hold.first))
            reason = self.summary(first)[1] if first is not None else "(its record is not read)"
            out.append((handler, source, hold, reason))
        return out

    def _decoded(self, parked: Parked, indent: int | None = 2) -> tuple[Shown, Shown]:
        """The key's columns and the change (op, table, before, after), masked; as they
        are, masked where they are JSON, when the record cannot be decoded."""
        table = parked.table
        try:
            event = self._decoder.decode_message(parked.original())
            if not isinstance(event, Change):
                raise TypeError(type(event).__name__)
            table = event.table or table
            key, key_hidden = self.masking.data(table, _plain(event.key))
        except Exception:  # a dead letter may be undecodable: shown as it is, masked
            return (
                self.masking.bytes_(table, parked.key, indent),
                self.masking.bytes_(table, parked.value, indent),
            )
        change = {
            "op": str(event.op),
            "table": table,
            "before": _plain(event.before),
            "after": _plain(event.after),
        }
        masked, hidden = self.masking.data(table, change)
        return Shown(pretty(key, indent), key_hidden), Shown(pretty(masked, indent), hidden)


def _plain(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    return dict(row.to_dict()) if hasattr(row, "to_dict") else dict(row)
