"""Paused handlers: a record's part for a handler an operator paused is held, in order, and
its offset does not move; the record's other handlers run. Once the handler is resumed its
held parts run on the workers, each behind what its key has queued, before any later record
of the key (both happen on the consumer thread, the held first).

Held records count against the in-flight window: a long pause fills it, and then fetching
pauses (per partition) until the handler is resumed. A handler that must pause for long
without holding up others belongs in a workload of its own. A restart reads the held
records again, still paused (the control topic says so)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import cast

from cdc.routing import Route, Runnable
from cdc.runtime.groups import Holding, Join
from cdc.runtime.records import Wait
from cdc.runtime.runs import Outcome
from cdc.runtime.work import Task


class Paused(Holding[list[tuple[Route, Join, Hashable]]]):
    """The held parts of each paused handler (by its name), in the order fetched."""

    def add(self, route: Route, join: Join, key: Hashable) -> None:
        """(Consumer thread.) Hold the record's part for ``route`` (``key``: the workers')."""
        self._open.setdefault(route.name, []).append((route, join, key))
        self.held += 1

    def resume(self, paused: Callable[[str], bool], group: Callable[[Route, Join], None]) -> None:
        """(Consumer thread.) Run what is held for each handler no longer ``paused``; a list
        or debounced handler's records go to ``group`` (as fetched)."""
        tasks: list[Task] = []
        for held in self._open.values():  # a partition given away: its owner re-reads
            kept = [h for h in held if not h[1].work.abandon.is_set()]
            self.held -= len(held) - len(kept)
            held[:] = kept
        for name in [n for n in self._open if not paused(str(n))]:
            held = self._open.pop(name)
            self.held -= len(held)
            for route, join, key in held:
                if route.grouped:
                    group(route, join)
                else:
                    tasks.append((key, self._task(route, join)))
        if tasks:
            self._submit(tasks)

    def _task(self, route: Route, join: Join) -> Callable[[], None]:
        def settle(joins: list[Join], wait: Wait) -> None:
            run = self._attempt(
                route, cast(Runnable, join.taken.event), join.taken.table, wait, None
            )
            if run.outcome is Outcome.DEAD_LETTER:
                self._park(route, join, run, wait)
            else:
                join.done((run,))

        return lambda: self._guarded([join], settle)
