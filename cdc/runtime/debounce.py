"""Debounce: a handler declared with ``debounce_s`` runs once per key with the key's latest
change, when the key has had no change for ``debounce_s`` or ``max_wait_s`` after its
first held change; the changes before it are coalesced into that run.

Each held change is a `Join` part, so its offset moves only once the run is done. The
superseded changes are finished with the run: the handler saw the state they led to. A
run that is dead-lettered parks the latest change (the one it ran with) and finishes the
superseded ones with it too, counted as coalesced: replaying the dead letter applies the
state they led to. A change without a key (a table without a primary key, a truncate)
has nothing to coalesce with: it runs at once, in partition order.

Held changes count against the in-flight window; the consumer closes every key at once
when they fill half of it, and when it stops. A partition revoked meanwhile: its held
changes are not finished when their key closes (`begin_all` refuses them), so its new
owner reads them again, as for batches.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import cast

from cdc.events import Change
from cdc.routing import Route, TableHandler
from cdc.runtime.groups import Holding, Join
from cdc.runtime.records import Wait
from cdc.runtime.runs import Outcome


class _Key:
    """The held changes of one key, for one handler."""

    __slots__ = ("joins", "key", "latest_by", "quiet_at", "task")

    def __init__(self, key: Hashable, task: Hashable, latest_by: float) -> None:
        self.key = key
        self.task = task  # the workers' key: one run of a key at a time, in order
        self.latest_by = latest_by  # max_wait_s after the first change
        self.quiet_at = latest_by
        self.joins: list[Join] = []


class _Lane:
    """One handler's held keys, kept so that `due` looks only at keys that are due."""

    __slots__ = ("by_first", "keys", "route")

    def __init__(self, route: Route) -> None:
        self.route = route
        # By last change: their quiet deadlines in order (one debounce_s per handler).
        self.keys: OrderedDict[Hashable, _Key] = OrderedDict()
        # By first change: their max-wait deadlines in order. A key closed earlier stays
        # here until its deadline: `due` skips it.
        self.by_first: deque[_Key] = deque()


class Debounce(Holding[_Lane]):
    """Each debounced handler's held keys; a key closed is run on the workers."""

    @staticmethod
    def wants(route: Route) -> bool:
        """Whether the route's handler is debounced."""
        h = route.handler
        return isinstance(h, TableHandler) and h.debounce_s is not None

    def add(self, route: Route, join: Join) -> None:
        """(Consumer thread.) Hold the change until its key is quiet."""
        handler = cast(TableHandler, route.handler)
        lane = self._open.get(handler)
        if lane is None:
            lane = self._open[handler] = _Lane(route)
        taken = join.taken
        key = taken.msg.key()
        task = ("debounce", id(handler), taken.topic, taken.partition, key)
        self.held += 1
        if key is None:  # nothing to coalesce with: run it now, after those before it
            alone = _Key(None, task, 0.0)
            alone.joins.append(join)
            self._close(lane, alone)
            return
        where = (taken.topic, taken.partition, key)
        now = time.monotonic()
        held = lane.keys.get(where)
        if held is None:
            held = lane.keys[where] = _Key(where, task, now + handler.max_wait_s)
            lane.by_first.append(held)
        else:
            lane.keys.move_to_end(where)
        held.joins.append(join)
        # Not capped by latest_by: quiet deadlines stay in the order of `keys`.
        held.quiet_at = now + (handler.debounce_s or 0.0)

    def due(self) -> None:
        """(Consumer thread.) Close the keys quiet long enough, or held the longest wait."""
        now = time.monotonic()
        for lane in self._open.values():
            keys, first = lane.keys, lane.by_first
            while keys:
                held = next(iter(keys.values()))
                if held.quiet_at > now:
                    break
                self._close(lane, held)
            while first and first[0].latest_by <= now:
                held = first.popleft()
                if keys.get(held.key) is held:
                    self._close(lane, held)

    def flush(self) -> None:
        """(Consumer thread.) Close every key now (the window fills, or the consumer stops)."""
        for lane in self._open.values():
            while lane.keys:
                self._close(lane, next(iter(lane.keys.values())))
            lane.by_first.clear()

    def _close(self, lane: _Lane, held: _Key) -> None:
        if held.key is not None:
            del lane.keys[held.key]
        # Taken out: a key closed early lingers in `by_first`, and must not keep its records.
        joins, held.joins = held.joins, []
        self.held -= len(joins)
        route = lane.route

        def settle(kept: list[Join], wait: Wait) -> None:
            self._settle(route, kept, wait)

        self._submit([(held.task, lambda: self._guarded(joins, settle))])

    def _settle(self, route: Route, joins: list[Join], wait: Wait) -> None:
        """(A worker.) Run the handler with the latest change; finish every held one."""
        latest = joins[-1]
        table = latest.taken.table
        run = self._attempt(route, cast(Change, latest.taken.event), table, wait, None)
        if run.outcome is Outcome.DEAD_LETTER:
            self._park(route, latest, run, wait)
        else:
            latest.done((run,))
        for join in joins[:-1]:
            join.done((run,))
        if len(joins) > 1:
            self._tally.metrics.coalesced.labels(route.name, table).inc(len(joins) - 1)
