"""The real consumer in a background thread, and ``wait_for`` a change (or
``wait_for_event`` a domain event) it handled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from cdc.events import Change, DomainEvent, Op
from cdc.routing import Router, discover
from cdc.runtime import Handled, Runtime
from cdc.settings import Settings
from cdc.tables.config import WatchedTables


class RunningConsumer:
    """``cdc run`` in this process: same runtime, handlers found the same way. Remembers every
    record it finished so a test can wait for one, whenever it arrived."""

    def __init__(
        self,
        settings: Settings,
        watched: WatchedTables,
        handlers: Sequence[str] | Router | None = None,
    ) -> None:
        if not isinstance(handlers, Router):
            found = discover(handlers if handlers is not None else settings.handler_modules())
            handlers = Router(found, watched.tables)
        self.settings = settings
        self.watched = watched
        self.runtime = Runtime(settings, watched, handlers, observer=self._record)
        self.handled: list[Handled] = []
        self._changed = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cdc-consumer", daemon=True)

    def _run(self) -> None:
        try:
            self.runtime.run()
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            with self._changed:
                self._changed.notify_all()

    def _record(self, handled: Handled) -> None:
        with self._changed:
            self.handled.append(handled)
            self._changed.notify_all()

    def start(self) -> RunningConsumer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.runtime.stop()
        self._thread.join(timeout)

    def wait_for(
        self,
        table: str,
        op: Op | str | None = None,
        where: Callable[[Change], bool] | None = None,
        timeout: float = 60.0,
    ) -> Handled:
        """Block until the consumer has finished a change of ``table`` (``schema.table`` or
        ``table`` in ``public``), of operation ``op``, for which ``where(change)`` holds;
        return what became of it. Changes finished before the call count."""
        table = table if "." in table else f"public.{table}"
        wanted = None if op is None else Op(op)

        def matches(h: Handled) -> bool:
            e = h.event
            if h.read_of:  # a snapshot read held back before decoding: table and op known
                return h.read_of == table and wanted in (None, Op.READ) and where is None
            return (
                isinstance(e, Change)
                and e.table == table
                and (wanted is None or e.op is wanted)
                and (where is None or where(e))
            )

        return self.wait_until(matches, f"a {op or 'change'} of {table}", timeout)

    def wait_for_event(
        self,
        event_type: str,
        where: Callable[[DomainEvent], bool] | None = None,
        timeout: float = 60.0,
    ) -> Handled:
        """Block until the consumer has finished a domain event of ``event_type`` for which
        ``where(event)`` holds; return what became of it."""

        def matches(h: Handled) -> bool:
            e = h.event
            return (
                isinstance(e, DomainEvent) and e.type == event_type and (where is None or where(e))
            )

        return self.wait_until(matches, f"a {event_type!r} event", timeout)

    def wait_until(
        self, predicate: Callable[[Handled], bool], what: str = "a record", timeout: float = 60.0
    ) -> Handled:
        """Block until a finished record satisfies ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for handled in self.handled[seen:]:
                    if predicate(handled):
                        return handled
                seen = len(self.handled)
                if self._error is not None:
                    raise RuntimeError("the consumer stopped with an error") from self._error
                if not self._thread.is_alive() and self._thread.ident is not None:
                    raise RuntimeError("the consumer is not running")
                left = deadline - time.monotonic()
                if left <= 0:
                    recent = [f"{h.topic}[{h.partition}]@{h.offset}" for h in self.handled[-10:]]
                    raise TimeoutError(
                        f"{what} not handled within {timeout}s; "
                        f"{len(self.handled)} record(s) finished, last: {recent}"
                    )
                self._changed.wait(min(left, 1.0))

    def wait_idle(self, timeout: float = 60.0, quiet_s: float = 1.0) -> None:
        """Block until the consumer holds no fetched record unfinished (a batch handler's
        open list included) and has finished none for ``quiet_s``."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while True:
            busy = any(w.in_flight for w in list(self.runtime.offsets.works.values()))
            count = len(self.handled)
            if busy or count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the consumer still had work after {timeout}s")
            time.sleep(0.1)

    def __enter__(self) -> RunningConsumer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
