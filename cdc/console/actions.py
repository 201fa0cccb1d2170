"""What the console's buttons do, through the functions the commands use: `cdc pause`,
`cdc resume`, `cdc skip` and `cdc rewind` orders on the control topic, and `cdc dlq
replay`. Each action is logged with its client (never a row's value), and each order says
it came from the console."""

from __future__ import annotations

import dataclasses
import threading
import uuid

import structlog

from cdc.console.sources import Sources
from cdc.dlq import replay_dead_letters
from cdc.errors import ConfigError
from cdc.runtime.control import (
    EVERY,
    Controls,
    Order,
    control_topic,
    new_order,
    pause_key,
    send_order,
    skip_key,
)
from cdc.runtime.rewind import Rewind, parse_point, rewind_key

log = structlog.get_logger("cdc.console")


class Actions:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self._replaying = threading.Lock()

    def _target(self, workload: str, handler: str | None) -> None:
        if workload not in self.sources.workloads:
            raise ConfigError(f"workload {workload!r}", ["no such workload"])
        found = self.sources.handler(handler) if handler else None
        if handler and (found is None or found.workload != workload):
            raise ConfigError(f"handler {handler!r}", [f"no such handler in workload {workload}"])

    def _order(self, reason: str, client: str) -> Order:
        order = new_order(reason.strip() or "by an operator, from the console")
        return dataclasses.replace(order, by=f"{order.by} (console, {client})")

    def _send(self, key: str, order: Order | None) -> None:
        topic = control_topic(self.sources.watched.connector.topic_prefix)
        send_order(self.sources.settings, topic, key, order.encode() if order else None)

    def pause(self, workload: str, handler: str | None, reason: str, client: str) -> str:
        self._target(workload, handler)
        self._send(pause_key(workload, handler), self._order(reason, client))
        log.warning("console.pause", workload=workload, handler=handler or EVERY, client=client)
        target = handler or EVERY
        seen = self.sources.wait_for(workload, lambda c: target in c.paused)
        what = handler or f"every handler of workload {workload}"
        return f"paused {what}" + ("" if seen else " (the order is sent; not read back yet)")

    def resume(self, workload: str, handler: str | None, client: str) -> str:
        self._target(workload, handler)
        self._send(pause_key(workload, handler), None)
        log.warning("console.resume", workload=workload, handler=handler or EVERY, client=client)
        target = handler or EVERY

        def resumed(controls: Controls) -> bool:
            return target not in controls.paused

        seen = self.sources.wait_for(workload, resumed)
        what = handler or f"workload {workload}"
        return f"resumed {what}" + ("" if seen else " (the order is sent; not read back yet)")

    def skip(
        self,
        workload: str,
        where: tuple[str, int, int],
        handler: str | None,
        reason: str,
        client: str,
    ) -> str:
        self._target(workload, handler)
        topic, partition, offset = where
        if not reason.strip():
            raise ConfigError("skip", ["say why: the reason goes with the record"])
        key = skip_key(workload, topic, partition, offset, handler)
        self._send(key, self._order(reason, client))
        log.warning(
            "console.skip",
            workload=workload,
            topic=topic,
            partition=partition,
            offset=offset,
            handler=handler or EVERY,
            client=client,
        )
        return f"{topic}[{partition}]@{offset} is skipped for {handler or workload}"

    def rewind(self, workload: str, handler: str | None, to: str, reason: str, client: str) -> str:
        """`cdc rewind`: the workload, or one handler of it, from a time or an offset."""
        self._target(workload, handler)
        if not reason.strip():
            raise ConfigError("rewind", ["say why: the reason goes with the order"])
        to_ms, offset = parse_point(to)
        order = self._order(reason, client)
        rewind = Rewind(
            uuid.uuid4().hex[:12], handler or EVERY, to_ms, offset, order.reason, order.by, order.at
        )
        topic = control_topic(self.sources.watched.connector.topic_prefix)
        send_order(self.sources.settings, topic, rewind_key(workload, handler), rewind.encode())
        log.warning(
            "console.rewind", workload=workload, handler=handler or EVERY, to=to, client=client
        )
        return f"rewinding {handler or f'workload {workload}'} to {to} (id {rewind.id})"

    def replay(self, workload: str, client: str) -> str:
        """`cdc dlq replay --workload`, one at a time."""
        self._target(workload, None)
        if not self._replaying.acquire(blocking=False):
            return "a replay is running already: try again when it is done"
        try:
            log.warning("console.replay", workload=workload, client=client)
            s = self.sources
            outcomes = replay_dead_letters(s.settings, s.watched, s.handlers, workload)
        finally:
            self._replaying.release()
        log.warning("console.replayed", workload=workload, **outcomes)
        summary = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "nothing to replay"
        return f"replayed {sum(outcomes.values())} record(s) of workload {workload}: {summary}"
