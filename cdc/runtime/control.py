"""Operators' orders to every running consumer: pause and resume a handler or a workload,
skip one record on purpose, rewind. They are records of a compacted control topic (one partition,
the latest order of each key kept), so every consumer of every workload reads them within a
second and a restarted one reads them again before it runs a handler (`TopicTail`).

Keys (``/`` never occurs in topic, workload or handler names):

- ``pause/<workload>/<handler>`` (``*``: every handler of the workload); a tombstone resumes;
- ``skip/<workload>/<topic>/<partition>/<offset>/<handler>`` (``*``: for every handler);
- ``rewind/<workload>/<handler>`` and the marks of where it was carried out (`cdc.runtime.rewind`).

Values are JSON: the reason, who gave the order and when."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from confluent_kafka import Message, Producer

from cdc.errors import CdcError
from cdc.runtime.rewind import Rewinds
from cdc.runtime.topic_tail import TopicTail
from cdc.settings import Settings
from cdc.tables.limits import RecordLimits
from cdc.topics import ensure_topic

log = structlog.get_logger("cdc.consumer")

EVERY = "*"  # every handler of the workload
_MAX_BYTES = 1 << 20


class Skipped(Exception):
    """An operator skipped the record for this handler (`cdc skip`)."""


def control_topic(topic_prefix: str) -> str:
    return f"{topic_prefix}.control"


@dataclass(frozen=True)
class Order:
    """Why, by whom and when an order was given."""

    reason: str
    by: str = ""
    at: str = ""

    @classmethod
    def parse(cls, value: bytes) -> Order:
        data = json.loads(value)
        return cls(str(data.get("reason", "")), str(data.get("by", "")), str(data.get("at", "")))

    def encode(self) -> bytes:
        return json.dumps({"reason": self.reason, "by": self.by, "at": self.at}).encode()

    def describe(self) -> str:
        return f"{self.reason} ({self.by}, {self.at})"


def new_order(reason: str) -> Order:
    by = f"{getpass.getuser()}@{socket.gethostname()}"
    return Order(reason, by, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def pause_key(workload: str, handler: str | None) -> str:
    return f"pause/{workload}/{handler or EVERY}"


def skip_key(workload: str, topic: str, partition: int, offset: int, handler: str | None) -> str:
    return f"skip/{workload}/{topic}/{partition}/{offset}/{handler or EVERY}"


Where = tuple[str, int, int]  # topic, partition, offset


class Controls:
    """The orders in force for one workload (`ControlTail` keeps them), read from any thread:
    ``paused`` (handler or `EVERY` -> its order), ``skips`` (where -> handler or `EVERY` ->
    its order). ``version`` counts the changes, for the consumer loop to notice them."""

    def __init__(self, workload: str) -> None:
        self.workload = workload
        self.paused: dict[str, Order] = {}
        self.skips: dict[Where, dict[str, Order]] = {}
        self.rewinds = Rewinds(workload)
        self.version = 0
        self._lock = threading.Lock()

    def is_paused(self, handler: str) -> bool:
        paused = self.paused
        return bool(paused) and (EVERY in paused or handler in paused)

    def pauses(self) -> frozenset[str]:
        """The handlers paused now (`EVERY`: all), taken once: a batch goes by one answer,
        or a resume folded meanwhile would let a key's later change run before its held
        ones."""
        return frozenset(self.paused)

    def skipped(self, handler: str, where: Where) -> Order | None:
        """The order to skip this record for this handler, if one was given."""
        orders = self.skips.get(where)
        if orders is None:
            return None
        return orders.get(handler) or orders.get(EVERY)

    def fold(self, key: str, value: bytes | None) -> bool:
        """One record of the control topic: whether it concerns this workload (another
        workload's, or an unknown kind, is left alone)."""
        kind, _, rest = key.partition("/")
        workload, _, target = rest.partition("/")
        if workload != self.workload or kind not in ("pause", "skip", "rewind", "rewound"):
            return False
        with self._lock:
            if kind == "pause":
                self._pause(target, value)
            elif kind == "skip":
                self._skip(target, value)
            else:
                self.rewinds.fold(kind, target, value)
            self.version += 1
        return True

    def _pause(self, handler: str, value: bytes | None) -> None:
        if value is None:
            if self.paused.pop(handler, None) is not None:
                log.warning("control.resumed", handler=handler)
            return
        order = self.paused[handler] = Order.parse(value)
        log.warning("control.paused", handler=handler, reason=order.describe())

    def _skip(self, target: str, value: bytes | None) -> None:
        topic, partition, offset, handler = target.rsplit("/", 3)
        where = (topic, int(partition), int(offset))
        if value is None:
            self.skips.get(where, {}).pop(handler, None)
            return
        order = Order.parse(value)
        self.skips.setdefault(where, {})[handler] = order
        log.warning(
            "control.skip",
            topic=topic,
            partition=int(partition),
            offset=int(offset),
            handler=handler,
            reason=order.describe(),
        )


class ControlTail(TopicTail):
    """Folds the control topic into ``controls``."""

    kind = "control"
    why = "operators' orders (pauses, skips, rewinds) are read before any handler runs"
    relist_s = 2.0  # the first order makes the topic: seen within seconds

    def __init__(
        self,
        settings: Settings,
        topic: str,
        controls: Controls,
        limits: RecordLimits,
        counted: Callable[[str], None] = lambda _: None,
    ) -> None:
        super().__init__(settings, topic, limits)
        self.controls = controls
        self._counted = counted  # told each order's kind (pause, resume, skip)

    def _fold(self, msg: Message) -> None:
        key = msg.key()
        if key is None:
            return
        try:
            if self.controls.fold(key.decode(), msg.value()):
                kind = key.decode().split("/", 1)[0]
                if kind != "rewound":  # a consumer's own mark, not an order
                    self._counted("resume" if msg.value() is None and kind == "pause" else kind)
        except Exception as exc:  # a record no order reads must never stop the tail
            log.error("control.unreadable", topic=self.topic, offset=msg.offset(), error=str(exc))


def send_order(settings: Settings, topic: str, key: str, value: bytes | None) -> None:
    """Write an order (None: withdraw it) to the control topic, made if missing; raises
    unless the broker has it."""
    ensure_topic(settings, topic, _MAX_BYTES, compacted=True)
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))
    failed: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    producer.produce(topic, value, key.encode(), on_delivery=delivered)
    if producer.flush(30) or failed:
        raise CdcError(f"{topic}: the order {key} was not delivered: {failed or 'timed out'}")


class _Orders(TopicTail):
    kind = "control"

    def __init__(self, settings: Settings, topic: str, limits: RecordLimits) -> None:
        super().__init__(settings, topic, limits)
        self.orders: dict[str, Order] = {}

    def _fold(self, msg: Message) -> None:
        key, value = msg.key(), msg.value()
        if key is None:
            return
        if value is None:
            self.orders.pop(key.decode(), None)
        else:  # a rewind's value carries the same fields, and more
            self.orders[key.decode()] = Order.parse(value)


def read_orders(
    settings: Settings, topic: str, limits: RecordLimits, stop: threading.Event
) -> dict[str, Order]:
    """Every order in force, by key; raises if the topic cannot be read within 30 s."""
    tail = _Orders(settings, topic, limits).start()
    timer = threading.Timer(30.0, stop.set)
    timer.start()
    try:
        if not tail.wait(stop):
            raise CdcError(f"{topic}: not read to its end within 30 s")
        return dict(tail.orders)
    finally:
        timer.cancel()
        tail.stop()
