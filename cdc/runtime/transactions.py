"""Transactions: each committed transaction's changes held for the handlers of whole
transactions until its END record and every change it counts are in, then run one
transaction at a time, in the order the ENDs come (commit order), the changes in the
order the transaction made them."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import cast

import structlog
from confluent_kafka import Consumer, TopicPartition

from cdc.events import Change, Changes, TransactionEvent
from cdc.routing import Route, TransactionHandler
from cdc.runtime.dispatch import Dispatcher
from cdc.runtime.groups import Join, begin_all
from cdc.runtime.park import Parker
from cdc.runtime.runs import HandlerRun, Outcome, Stopping
from cdc.runtime.tally import Tally
from cdc.runtime.work import PartitionWork, Task

log = structlog.get_logger("cdc.consumer")

# A transaction incomplete this long is looked into: either the rest of it was committed
# before a restart (then it was handled: see `_stale`), or something holds it up.
STALE_S = 30.0


class _Tx:
    __slots__ = ("end", "end_id", "expected", "joins", "parked", "refused", "since", "warned")

    def __init__(self) -> None:
        self.joins: list[Join] = []
        self.parked = 0  # of a refused transaction: its changes dead-lettered so far
        self.end: Join | None = None
        self.end_id = ""
        self.expected: int | None = None
        self.refused = ""  # why its changes go to the dead-letter topic
        self.since = time.monotonic()
        self.warned = False


class Transactions:
    """The open transactions of each transaction handler, keyed by PostgreSQL's xid (the
    part of Debezium's transaction id every change and the END share)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        parker: Parker,
        tally: Tally,
        submit: Callable[[list[Task]], None],
        stop: threading.Event,
        limit: int,
    ) -> None:
        self._dispatcher = dispatcher
        self._parker = parker
        self._tally = tally
        self._submit = submit
        self._stop = stop
        self._limit = limit  # changes a transaction may hold: half the in-flight window
        self._txs: dict[tuple[TransactionHandler, int], _Tx] = {}
        self._order: dict[TransactionHandler, deque[int]] = {}  # xids in END order
        self._routes: dict[TransactionHandler, Route] = {}
        self._lock = threading.Lock()
        # ENDs whose transaction ran: finished once its changes' offsets can move, so the
        # END is never committed ahead of them.
        self._ends: list[tuple[Join, HandlerRun, list[tuple[PartitionWork, int]]]] = []
        self._warned_partitions = False
        # Per partition, the records held for transactions not complete yet.
        self.waiting: Counter[tuple[str, int]] = Counter()

    def change(self, route: Route, join: Join) -> None:
        """(Consumer thread.) Hold a change for its transaction."""
        handler = cast(TransactionHandler, route.handler)
        self._routes[handler] = route
        change = cast(Change, join.taken.event)
        xid = change.source.tx_id if change.transaction is not None else None
        if xid is None:
            self._park(
                route,
                join,
                "the change carries no transaction metadata: set transaction_metadata: true "
                "under connector: in the watched-tables file and run `cdc connector apply`",
            )
            return
        tx = self._txs.get((handler, xid))
        if tx is None:
            tx = self._txs[handler, xid] = _Tx()
        if tx.refused:
            self._park(route, join, tx.refused)
            tx.parked += 1
            self._forget_refused(handler, xid, tx)
            return
        tx.joins.append(join)
        self._wait(join, 1)
        if len(tx.joins) > self._limit:
            self._refuse(route, xid, tx)
            return
        self._release(handler)

    def end(self, route: Route, join: Join) -> None:
        """(Consumer thread.) A transaction's END: how many of its changes to wait for."""
        handler = cast(TransactionHandler, route.handler)
        self._routes[handler] = route
        event = cast(TransactionEvent, join.taken.event)
        counts = {c.data_collection: c.event_count for c in event.data_collections or ()}
        expected = sum(counts.get(table, 0) for table in handler.tables)
        if not expected:
            join.done(())  # nothing of the handler's tables
            return
        if join.taken.partition and not self._warned_partitions:
            self._warned_partitions = True
            log.error(
                "transaction.topic_partitioned",
                topic=join.taken.topic,
                note="the transaction topic has more than one partition: ENDs of different "
                "partitions come in any order, so transactions may run out of commit order; "
                "recreate the topic with one partition (`cdc connector apply` creates it so)",
            )
        xid = int(event.id.split(":", 1)[0])
        tx = self._txs.get((handler, xid))
        if tx is None:
            tx = self._txs[handler, xid] = _Tx()
        tx.expected, tx.end, tx.end_id = expected, join, event.id
        if tx.refused or expected > self._limit:
            if not tx.refused:
                self._refuse(route, xid, tx)
            join.done(())
            self._forget_refused(handler, xid, tx)
            return
        self._wait(join, 1)
        self._order.setdefault(handler, deque()).append(xid)
        self._release(handler)

    def _release(self, handler: TransactionHandler) -> None:
        """Hand the complete transactions at the head of the END order to the workers."""
        order = self._order.get(handler)
        route = self._routes[handler]
        while order:
            xid = order[0]
            tx = self._txs[handler, xid]
            assert tx.end is not None
            assert tx.expected is not None
            if tx.end.work.abandon.is_set():  # the END's partition went: read again later
                order.popleft()
                self._wait(tx.end, -1)
                tx.end = tx.expected = None
                continue
            if len(tx.joins) >= tx.expected:
                gone = [j for j in tx.joins if j.work.abandon.is_set()]
                for join in gone:
                    self._wait(join, -1)
                tx.joins = [j for j in tx.joins if not j.work.abandon.is_set()]
            if len(tx.joins) < tx.expected:
                return
            order.popleft()
            del self._txs[handler, xid]
            for join in (*tx.joins, tx.end):
                self._wait(join, -1)
            self._submit([(("transaction", id(handler)), self._task(route, tx))])

    def _task(self, route: Route, tx: _Tx) -> Callable[[], None]:
        return lambda: self._run(route, tx)

    def _run(self, route: Route, tx: _Tx) -> None:
        """(A worker.) One whole transaction, its changes in the order it made them."""
        joins = sorted(tx.joins, key=_order_in_transaction)
        works, kept = begin_all(joins)
        if len(kept) < len(joins):  # a partition went: its owner reads it all again
            for w in works.values():
                w.end()
            return

        def wait(seconds: float) -> bool:
            return self._stop.wait(seconds) or any(w.hurry.is_set() for w in works.values())

        try:
            changes = Changes((cast(Change, j.taken.event) for j in joins), tx.end_id)
            run = self._dispatcher.run(route, changes, wait)
            metrics = self._tally.metrics
            self._tally.observe(
                metrics.handler_seconds, (route.name, "", run.outcome.value), run.seconds
            )
            if run.outcome is Outcome.DEAD_LETTER:
                # Nothing partial: the whole transaction goes, in order, with the reason.
                for join in joins:
                    self._park(route, join, run.reason, run, wait)
            else:
                for join in joins:
                    join.done((run,))
            assert tx.end is not None
            with self._lock:
                self._ends.append((tx.end, run, [(j.work, j.taken.offset) for j in joins]))
        except Stopping:
            pass  # not finished: read again
        finally:
            for w in works.values():
                w.end()

    def settle(
        self,
        consumer: Consumer,
        works: dict[tuple[str, int], PartitionWork],
        topics_of: Callable[[TransactionHandler], set[str]],
    ) -> None:
        """(Consumer thread, once a batch.) Finish the ENDs whose changes' offsets moved;
        look into transactions incomplete for long (``works``: the partitions assigned;
        ``topics_of``: the topics a handler's transactions come from)."""
        with self._lock:
            ends, self._ends = self._ends, []
        for end, run, data in ends:
            if all(w.abandon.is_set() or (w.position or 0) > offset for w, offset in data):
                end.done((run,))
            else:
                with self._lock:
                    self._ends.append((end, run, data))
        now = time.monotonic()
        for (handler, xid), tx in list(self._txs.items()):
            if now - tx.since > STALE_S and not tx.refused:
                # Asked of the brokers once per STALE_S, not on every fetch while it waits.
                tx.since = now
                topics = topics_of(handler)
                partitions = [TopicPartition(t, p) for t, p in works if t in topics]
                self._stale(consumer, handler, xid, tx, topics, partitions)

    def _stale(
        self,
        consumer: Consumer,
        handler: TransactionHandler,
        xid: int,
        tx: _Tx,
        topics: set[str],
        partitions: list[TopicPartition],
    ) -> None:
        """A transaction held long without all of it. Offsets move only after its handler
        is done, so when every partition it could come from is read to its end, the
        missing part was committed before a restart: it was handled; finish the rest."""
        whole = _owns_all(consumer, topics, len(partitions))
        caught_up = whole and all(_read_to_end(consumer, tp) for tp in partitions)
        if not caught_up:
            if not tx.warned:
                tx.warned = True
                log.warning(
                    "transaction.waiting",
                    handler=handler.name,
                    xid=xid,
                    held=len(tx.joins),
                    expected=tx.expected,
                    note="a transaction waits for the rest of its changes (or its END): "
                    "every partition of its tables and of the transaction topic must be "
                    "read by this consumer (run transaction handlers in one consumer)",
                )
            return
        log.warning(
            "transaction.already_handled",
            handler=handler.name,
            xid=xid,
            held=len(tx.joins),
            expected=tx.expected,
            note="the rest of this transaction was committed before a restart, after its "
            "handler ran: what was read again is finished without running it",
        )
        run = HandlerRun(handler.name, Outcome.DUPLICATE, 0, "handled before a restart")
        for join in tx.joins:
            self._wait(join, -1)
            join.done((run,))
        if tx.end is not None:
            self._wait(tx.end, -1)
            tx.end.done((run,))
            order = self._order.get(handler)
            if order and xid in order:
                order.remove(xid)
        del self._txs[handler, xid]
        self._release(handler)

    def _refuse(self, route: Route, xid: int, tx: _Tx) -> None:
        tx.refused = (
            f"transaction {xid} holds more than {self._limit} changes for {route.name}, half "
            "the in-flight window (max_in_flight): it cannot be held whole; raise "
            "CDC_MAX_IN_FLIGHT to take transactions this large"
        )
        log.error("transaction.too_large", handler=route.name, xid=xid, limit=self._limit)
        for join in tx.joins:
            self._wait(join, -1)
            self._park(route, join, tx.refused)
        tx.parked += len(tx.joins)
        tx.joins = []
        self._forget_refused(cast(TransactionHandler, route.handler), xid, tx)

    def _forget_refused(self, handler: TransactionHandler, xid: int, tx: _Tx) -> None:
        """Forget a refused transaction once its END came and all its changes went."""
        if tx.expected is not None and tx.parked >= tx.expected:
            self._txs.pop((handler, xid), None)

    def _wait(self, join: Join, n: int) -> None:
        at = (join.taken.topic, join.taken.partition)
        self.waiting[at] += n
        if self.waiting[at] <= 0:
            del self.waiting[at]

    def _park(
        self,
        route: Route,
        join: Join,
        reason: str,
        run: HandlerRun | None = None,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        taken = join.taken
        self._parker.park(
            taken.msg,
            reason,
            type(run.error).__name__ if run and run.error else "TransactionRefused",
            wait=wait or self._stop.wait,
            handler=route.name,
            table=taken.table,
            attempts=run.attempts if run else 0,
        )
        join.done((run or HandlerRun(route.name, Outcome.DEAD_LETTER, 0, reason),), (reason,))


def _order_in_transaction(join: Join) -> int:
    block = cast(Change, join.taken.event).transaction
    return block.total_order if block is not None else 0


def _owns_all(consumer: Consumer, topics: set[str], assigned: int) -> bool:
    """Whether the ``assigned`` partitions are every partition of ``topics``: only then can
    this consumer tell that a transaction's missing part is behind it."""
    try:
        total = sum(len(consumer.list_topics(t, timeout=5).topics[t].partitions) for t in topics)
    except Exception:  # a broker away: not known
        return False
    return total == assigned


def _read_to_end(consumer: Consumer, tp: TopicPartition) -> bool:
    """Whether this consumer has fetched everything the partition holds now."""
    try:
        _, high = consumer.get_watermark_offsets(tp, timeout=5)
        (position,) = consumer.position([tp])
    except Exception:  # a broker away: not known, so not read to its end
        return False
    return position.offset >= 0 and position.offset >= high
