"""The consumer loop: fetch, decode, route, run handlers, park what fails, store offsets.

At-least-once: a record's offset is stored only once every handler that wants it is done
or the record is in the dead-letter topic, and only when every record before it in its
partition is too; stored offsets are committed every second, when partitions are revoked
and on close. Records with the same key are handled one at a time, in order; records with
different keys run on up to ``concurrency`` worker threads, or on the consumer thread itself
for sync handlers that have proven quick. At most about ``max_in_flight``
records are held: once that many are, a partition holding its share of them pauses until
half of that is done, and the others go on.
"""

from __future__ import annotations

import collections
import inspect
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from cdc.decoding import Decoder, decoder_for
from cdc.decoding.envelope import table_of_topic
from cdc.errors import ConfigError, DecodeError, KafkaRefused, RegistryError
from cdc.events import Change, DomainEvent, Event, Kind
from cdc.routing import Routable, Route, Router
from cdc.runtime.capture_watch import CaptureWatcher
from cdc.runtime.consumer_config import consumer_config
from cdc.runtime.context import Resources
from cdc.runtime.dead_letter import DeadLetterSink, Rejected
from cdc.runtime.dispatch import Backoff, Dispatcher, HandlerRun, Later, Outcome, Stopping
from cdc.runtime.housekeeping import LedgerPruner
from cdc.runtime.metrics import Endpoint, Metrics, PlainHistogram, Probes
from cdc.runtime.work import Key, KeyedWorkers, PartitionWork
from cdc.settings import Settings
from cdc.tables.config import OutboxOptions, WatchedTables
from cdc.tables.connector import outbox_topic_pattern

log = structlog.get_logger("cdc.consumer")
T = TypeVar("T")
_BATCH = 500
_QUIET_ERRORS = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF)
_REFUSED = (KafkaError._AUTHENTICATION, KafkaError._SSL)


class Handled(NamedTuple):
    """What became of one record: its event (None if it could not be decoded) and each
    handler's run; ``parked`` says why it went to the dead-letter topic, if it did. (A tuple:
    one is made per record, and a frozen dataclass costs three times as much to make.)"""

    topic: str
    partition: int
    offset: int
    event: Event | None
    runs: tuple[HandlerRun, ...] = ()
    parked: tuple[str, ...] = ()
    read_of: str = ""  # the table of a snapshot read held back without decoding it


@dataclass(frozen=True)
class Pending:
    """A record whose handlers ran on the consumer thread until one had to wait before its
    next attempt: the runs so far, and that handler's state."""

    runs: tuple[HandlerRun, ...]
    later: Later


class Taken:
    """A record on its way through its handlers: where it came from, its event, the routes
    it takes and its metric labels."""

    __slots__ = ("event", "msg", "offset", "op", "partition", "routes", "table", "topic")

    def __init__(
        self,
        msg: Message,
        where: tuple[str, int, int],
        event: Routable,
        routes: list[Route],
        table: str,
        op: str,
    ) -> None:
        self.msg = msg
        self.topic, self.partition, self.offset = where
        self.event = event
        self.routes = routes
        self.table = table
        self.op = op

    def handled(self, runs: tuple[HandlerRun, ...] = (), parked: tuple[str, ...] = ()) -> Handled:
        return Handled(self.topic, self.partition, self.offset, self.event, runs, parked)


Observer = Callable[[Handled], None]
Wait = Callable[[float], bool]
Task = tuple[Key, Callable[[], None]]
# A handler that ran this long lately is handed to the workers rather than run on the
# consumer thread: it waits on I/O, and others can run meanwhile. A handler starts out on
# the workers, as if it had run _UNPROVEN_S, and moves to the consumer thread after a few
# dozen quick runs: one that blocks from its first change never holds up fetching.
_INLINE_S = 0.001
_UNPROVEN_S = 0.01


class Runtime:
    """One consumer in the group. ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        watched: WatchedTables,
        router: Router,
        *,
        decoder: Decoder | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.observer = observer
        outbox = (watched.outbox or OutboxOptions()).table
        self.resources = Resources(settings, outbox, watched.limits)
        self._stop = threading.Event()
        self.dispatcher = Dispatcher(
            self.resources,
            Backoff(
                settings.retry_attempts, settings.retry_backoff_s, settings.retry_backoff_max_s
            ),
        )
        prefix = watched.connector.topic_prefix
        self.dead_letters = DeadLetterSink(
            self.resources, settings.dead_letter_topic or f"{prefix}.dlq"
        )
        self.decoder = decoder or decoder_for(watched.connector.encoding, settings.registry_url)
        self.topics = [f"{prefix}.{table}" for table in router.tables()]
        self.outbox_table = self.resources.outbox_table
        self._outbox_topic: re.Pattern[str] | None = None
        pattern = outbox_topic_pattern(watched)
        if pattern is not None:
            # Every aggregate type's topic, new ones included; events of types no handler
            # takes follow the unrouted policy.
            self.topics.append(pattern)
            self._outbox_topic = re.compile(pattern)
            if self._outbox_topic.match(self.dead_letters.topic):
                raise ConfigError(
                    "settings",
                    [f"the dead-letter topic {self.dead_letters.topic} is an outbox topic"],
                )
        elif router.event_types():
            raise ConfigError(
                "handlers",
                [
                    f"{', '.join(router.event_types())}: event handlers need an `outbox:` "
                    "in the watched-tables file"
                ],
            )
        self.metrics = Metrics()
        self.probes = Probes()
        self.capture = CaptureWatcher(settings, watched, self.metrics, self.probes)
        self.pruner = LedgerPruner(self.resources, self.metrics, settings.ledger_prune_interval_s)
        self.endpoint: Endpoint | None = None
        self._partitions: dict[tuple[str, int], PartitionWork] = {}
        self._workers = KeyedWorkers(0)  # replaced by run()
        # How long each handler ran lately (jumps up at once, comes down slowly), and
        # which are async (they run on the dispatcher's loop: never on the consumer thread).
        self._pace: dict[str, float] = {}
        self._one_worker = settings.concurrency == 1
        self._topics: dict[str, tuple[bool, str]] = {}  # see _topic()
        # Records counted and durations observed on the consumer thread, added to the
        # metrics once per fetch (see _flush_metrics).
        self._tally: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._observed: dict[PlainHistogram, list[tuple[tuple[str, ...], float]]] = {}
        self._loop_thread: int | None = None
        self._async = {h.name for h in router.handlers if inspect.iscoroutinefunction(h.func)}
        self._warned: set[str] = set()
        self._refused: tuple[float, str] | None = None  # since when, why

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        s = self.settings
        if s.http_port is not None:
            self.endpoint = Endpoint(self.metrics, self.probes, s.http_host, s.http_port).start()
        self.capture.start()
        self.pruner.start()
        consumer = self._consumer()
        workers = self._workers = KeyedWorkers(s.concurrency)
        consumer.subscribe(
            self.topics,
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )
        log.info(
            "consumer.started",
            group=s.group_id,
            topics=self.topics,
            handlers=[h.name for h in self.router.handlers],
            event_types=self.router.event_types(),
            dead_letter_topic=self.dead_letters.topic,
            concurrency=s.concurrency,
            max_in_flight=s.max_in_flight,
            http_port=self.endpoint.port if self.endpoint else None,
            settings=s.masked(),
        )
        in_flight = 0
        self._loop_thread = threading.get_ident()
        try:
            while not self._stop.is_set():
                if self._refused is not None:
                    since, reason = self._refused
                    if time.monotonic() - since > s.kafka_refused_timeout_s:
                        raise KafkaRefused(time.monotonic() - since, reason)
                self.probes.beat()
                batch = self._fetch(consumer, max(1, min(_BATCH, s.max_in_flight - in_flight)))
                # Ready once fetching: a group with no partitions yet (Debezium makes a topic
                # on its table's first change) is still a healthy consumer.
                self.probes.fetching = True
                tasks: list[Task] = []
                for msg in batch:
                    if self._stop.is_set():
                        break  # the rest of the fetch is read again after a restart
                    try:
                        self._accept(msg, tasks)
                    except Stopping:
                        break  # stopping while the registry is down: this record is read again
                workers.submit(tasks)
                self._flush_metrics()
                self._store(consumer)
                in_flight = self._flow(consumer)
        finally:
            self._shut_down(consumer, workers)

    def _consumer(self) -> Consumer:
        config = consumer_config(self.settings, self.resources.limits)
        return Consumer({**config, "stats_cb": self._stats, "error_cb": self._kafka_error})

    @staticmethod
    def _fetch(consumer: Consumer, most: int) -> list[Message]:
        """What librdkafka holds, up to ``most``, without waiting; when it holds nothing, wait
        up to 0.2 s for the first record. (``consume(n, timeout)`` alone waits for all ``n``
        until the timeout: a change arriving alone would sit there for it.)"""
        batch = consumer.consume(most, 0)
        if batch or most == 1:
            return batch or consumer.consume(1, 0.2)
        batch = consumer.consume(1, 0.2)
        return batch + consumer.consume(most - 1, 0) if batch else batch

    def _kafka_error(self, err: KafkaError) -> None:
        """librdkafka's client-level errors. Refused credentials or certificates are counted
        from the first; anything else (a broker down, a timeout) is waited out."""
        if err.code() in _REFUSED:
            if self._refused is None:
                self._refused = (time.monotonic(), str(err))
            log.error("kafka.refused", error=str(err))
        elif err.code() not in _QUIET_ERRORS:
            log.warning("kafka.error", error=str(err))

    def _stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        self.metrics.librdkafka_stats(stats)
        if any(b.get("state") == "UP" for b in stats.get("brokers", {}).values()):
            self._refused = None  # a broker took us after all: whatever it was has passed

    def _shut_down(self, consumer: Consumer, workers: KeyedWorkers) -> None:
        """Stop fetching; let running work finish until the deadline; commit what finished."""
        self.probes.stopping = True
        deadline = time.monotonic() + self.settings.shutdown_deadline_s
        for work in list(self._partitions.values()):
            work.hurry.set()  # changes waiting for a retry are read again after a restart
        finished = workers.wait_idle(self.settings.shutdown_deadline_s)
        for work in list(self._partitions.values()):
            work.give_up()
            work.quiesce(deadline - time.monotonic())
        workers.close()
        self._flush_metrics()
        self._store(consumer)
        consumer.close()  # revokes (committing each partition's position) and leaves the group
        self.close()
        log.info(
            "consumer.stopped",
            finished_in_time=finished,
            records=self.metrics.record_totals(),
        )

    def close(self) -> None:
        """Release the handlers' connections, the producer and the HTTP endpoint."""
        self.capture.stop()
        self.pruner.stop()
        self.dispatcher.close()
        self.resources.close()
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    # -- partitions ------------------------------------------------------------------------

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self._partitions.setdefault((p.topic, p.partition), PartitionWork(p.topic, p.partition))
        if partitions:
            # librdkafka keeps a partition's pause across losing and regaining it: one
            # paused when the session was lost would never fetch again.
            consumer.resume(partitions)
        self.metrics.assigned.set(len(self._partitions))
        log.info("partitions.assigned", partitions=_names(partitions))

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Give the partitions away cleanly: drop their queued work, let running work end
        (up to the shutdown deadline), then commit how far each got."""
        works = self._release(partitions)
        deadline = time.monotonic() + self.settings.shutdown_deadline_s
        for work in works:
            work.quiesce(deadline - time.monotonic())
        offsets = [
            TopicPartition(w.topic, w.partition, pos)
            for w in works
            if (pos := w.position) is not None
        ]
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                log.warning("commit.failed", error=str(exc), partitions=_names(offsets))
        log.info("partitions.revoked", partitions=_names(partitions), committed=_names(offsets))

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else owns them already: committing could move their offsets backwards.
        self._release(partitions)
        log.warning("partitions.lost", partitions=_names(partitions))

    def _release(self, partitions: Sequence[TopicPartition]) -> list[PartitionWork]:
        works = []
        for p in partitions:
            work = self._partitions.pop((p.topic, p.partition), None)
            if work is not None:
                work.give_up()
                works.append(work)
            self.metrics.forget_partition(p.topic, p.partition)
        self.metrics.assigned.set(len(self._partitions))
        return works

    def _flow(self, consumer: Consumer) -> int:
        """Once the in-flight window is full, pause the partitions holding their share of it;
        resume one when half of its share is done, or half the window; return the records in
        flight. Per partition, not all at once: a global pause would always hand the next
        fetch's first partition the whole window while the partitions behind it starve. Only
        when full: pausing drops what librdkafka prefetched, to be fetched again."""
        works = list(self._partitions.values())
        window = self.settings.max_in_flight
        share = max(1, window // max(1, len(works)))
        counts = [work.in_flight for work in works]
        total = sum(counts)
        pause: list[PartitionWork] = []
        resume: list[PartitionWork] = []
        for work, n in zip(works, counts, strict=True):
            if not work.paused and n >= share and total >= window:
                pause.append(work)
            elif work.paused and (n <= share // 2 or total <= window // 2):
                resume.append(work)
        for changed, paused in ((pause, True), (resume, False)):
            if not changed:
                continue
            for work in changed:
                work.paused = paused
            tps = [TopicPartition(w.topic, w.partition) for w in changed]
            (consumer.pause if paused else consumer.resume)(tps)
            log.debug("fetch.paused" if paused else "fetch.resumed", partitions=_names(tps))
        self.metrics.paused.set(sum(w.paused for w in works))
        self.metrics.in_flight.set(total)
        return total

    def _store(self, consumer: Consumer) -> None:
        for work in list(self._partitions.values()):
            position = work.to_store()
            if position is not None:
                try:
                    consumer.store_offsets(
                        offsets=[TopicPartition(work.topic, work.partition, position)]
                    )
                except KafkaException as exc:  # revoked meanwhile: the new owner goes on
                    log.debug("store.skipped", error=str(exc))

    # -- records ---------------------------------------------------------------------------

    def _accept(self, msg: Message, tasks: list[Task]) -> None:
        """Finish a record that needs no handler or whose handlers are quick, else add its
        handlers' task to ``tasks``."""
        err = msg.error()
        if err is not None:
            if err.code() not in _QUIET_ERRORS:
                log.warning("kafka.error", error=str(err))
            return
        where = _coordinates(msg)
        work = self._partitions.get(where[:2])
        if work is None:  # not (or no longer) ours: the owner reads it
            return
        taken = self._prepare(msg, where)
        if isinstance(taken, Handled):
            work.skip(where[2], msg.timestamp()[1])
            if self.observer is not None:
                self.observer(taken)
            return
        work.add(where[2], msg.timestamp()[1])
        # One key at a time, in partition order; a record without a key orders per partition.
        key = (where[0], where[1], msg.key())
        pending = None
        if self._inline(key, taken.routes, tasks):
            # Quick handlers run right here: handing them to a thread costs more than they do.
            pending = self._handle(work, taken, None, None)
            if pending is None:
                return

        def task() -> None:
            if not work.begin():
                return  # revoked or past the deadline: not finished, so read again
            try:
                self._handle(work, taken, pending, work.hurry.wait)
            finally:
                work.end()

        tasks.append((key, task))

    def _inline(self, key: Key, routes: list[Route], tasks: list[Task]) -> bool:
        """Whether to run the handlers on the consumer thread: all are sync and ran quickly
        lately, nothing of the key waits for a worker, and with one worker, none is busy
        (``concurrency: 1`` runs one handler at a time)."""
        workers = self._workers
        if self._one_worker and not workers.idle:
            return False
        for route in routes:
            if route.name in self._async or self._pace.get(route.name, _UNPROVEN_S) > _INLINE_S:
                return False
        if workers.queued(key):
            return False
        return not tasks or all(k != key for k, _ in tasks)

    def _handle(
        self, work: PartitionWork, taken: Taken, pending: Pending | None, wait: Wait | None
    ) -> Pending | None:
        """Run the handlers (``wait`` None: without waiting, returning what has to) and
        finish the record; a fault of ours parks it."""
        try:
            handled = self._run_routes(taken, wait, pending)
        except Stopping:
            return None  # not finished: read again
        except Exception as exc:  # a fault of ours, not the record's: park it, keep going
            msg, table = taken.msg, taken.table
            log.exception("record.failed", **_where(msg), table=table, op=taken.op)
            try:
                self._park(
                    msg,
                    f"{type(exc).__name__}: {exc}",
                    "InternalError",
                    wait=wait or self._stop.wait,
                    table=table,
                )
            except Stopping:
                return None
            handled = taken.handled(parked=(str(exc),))
        if isinstance(handled, Pending):
            return handled
        self._finish(work, handled)
        return None

    def _finish(self, work: PartitionWork, handled: Handled) -> None:
        work.finish(handled.offset)
        if self.observer is not None:
            self.observer(handled)

    def process(self, msg: Message, only: str | None = None) -> Handled:
        """Take one record all the way on this thread: handled, held back, skipped or parked.
        ``only``: run just the handler of that name (a dead-letter replay)."""
        taken = self._prepare(msg, _coordinates(msg), only)
        if isinstance(taken, Handled):
            return taken
        handled = self._run_routes(taken, self._stop.wait)
        assert isinstance(handled, Handled)  # it waits, so nothing is left pending
        return handled

    def _prepare(
        self, msg: Message, coordinates: tuple[str, int, int], only: str | None = None
    ) -> Handled | Taken:
        """Decode and route: a finished record, or the change and the handlers to run."""
        topic = coordinates[0]
        outbox, table = self._topics.get(topic) or self._topic(topic)
        value = msg.value()
        # A snapshot read no handler of its table takes is not worth decoding.
        if (
            not outbox
            and value is not None
            and only is None
            and self.decoder.peek_op(value) == "r"
            and not self.router.gate.admits(Kind.SNAPSHOT_READ, table)
        ):
            self._count("held_back", table, "r")
            return Handled(*coordinates, None, read_of=table)
        try:
            event = self._decode(msg, outbox)
        except DecodeError as exc:
            reason = exc.reason if exc.part == "value" else f"{exc.part}: {exc.reason}"
            self._park(msg, reason, "DecodeError", wait=self._stop.wait)
            self._count("undecodable", "", "")
            return Handled(*coordinates, None, parked=(str(exc),))
        table, op = self._labels(event)
        if not self.router.gate.admit(event):
            self._count("held_back", table, op)
            return Handled(*coordinates, event)
        routes = self.router.routes_for(event, table)
        if routes is None:
            return self._unrouted(msg, event)
        if only is not None:
            routes = [r for r in routes if r.name == only]
        if not routes:
            self._count("filtered", table, op)
            return Handled(*coordinates, event)
        assert isinstance(event, Change | DomainEvent)
        return Taken(msg, coordinates, event, routes, table, op)

    def _topic(self, topic: str) -> tuple[bool, str]:
        """Whether ``topic`` is an outbox topic, and the table a data topic is named for
        (<prefix>.<schema>.<table>); kept per topic."""
        outbox = self._outbox_topic is not None and bool(self._outbox_topic.match(topic))
        found = self._topics[topic] = (outbox, "" if outbox else table_of_topic(topic))
        return found

    def _labels(self, event: Event) -> tuple[str, str]:
        """The metric labels table and op: for a domain event, the outbox and its type."""
        if isinstance(event, DomainEvent):
            return self.outbox_table, event.type
        return event.table, event.op.value if isinstance(event, Change) else ""

    def _run_routes(
        self, taken: Taken, wait: Wait | None, pending: Pending | None = None
    ) -> Handled | Pending:
        """Each route's handler run, from where ``pending`` left off; ``wait`` None: where a
        handler would wait before its next attempt, stop and return that as `Pending`."""
        event, table = taken.event, taken.table
        runs: list[HandlerRun] = []
        parked: list[str] = []
        duplicates = 0
        later = None
        if pending is not None:
            runs, later = list(pending.runs), pending.later
            parked = [r.reason for r in runs if r.outcome is Outcome.DEAD_LETTER]
            duplicates = sum(r.outcome is Outcome.DUPLICATE for r in runs)
        for route in taken.routes[len(runs) :]:
            if wait is None:
                tried = self.dispatcher.try_run(route, event)
                if isinstance(tried, Later):
                    self._paced(route, tried.spent)
                    return Pending(tuple(runs), tried)
                run = tried
            else:
                run = self.dispatcher.run(route, event, wait, later=later)
                later = None
            self._paced(route, run.seconds)
            runs.append(run)
            self._observe_run(route, table, run)
            if run.outcome is Outcome.DUPLICATE:
                duplicates += 1
            elif run.outcome is Outcome.DEAD_LETTER:
                error = type(run.error).__name__ if run.error is not None else "InvalidResult"
                parked.append(run.reason)
                self._park(
                    taken.msg,
                    run.reason,
                    error,
                    wait=wait or self._stop.wait,
                    handler=route.name,
                    table=table,
                    attempts=run.attempts,
                )
        outcome = (
            "dead_lettered" if parked else "duplicate" if duplicates == len(runs) else "handled"
        )
        self._count(outcome, table, taken.op)
        committed_ms = event.source.ts_ms if isinstance(event, Change) else event.kafka.timestamp_ms
        if committed_ms is not None:
            self._observe(self.metrics.end_to_end, (table,), time.time() - committed_ms / 1000)
        return taken.handled(tuple(runs), tuple(parked))

    def _paced(self, route: Route, seconds: float) -> None:
        """Note how long a handler ran: a slow run counts at once, quick ones bring it down
        over a few dozen runs. (From any thread: a lost update only delays the switch.)"""
        pace = self._pace.get(route.name, _UNPROVEN_S)
        self._pace[route.name] = seconds if seconds > pace else pace * 0.9 + seconds * 0.1

    def _observe_run(self, route: Route, table: str, run: HandlerRun) -> None:
        m = self.metrics
        self._observe(m.handler_seconds, (route.name, table, run.outcome.value), run.seconds)
        if run.attempts > 1:
            m.retries.labels(route.name, table).inc(run.attempts - 1)

    def _count(self, outcome: str, table: str, op: str) -> None:
        if threading.get_ident() == self._loop_thread:
            self._tally[table, op, outcome] += 1
        else:
            self.metrics.child(self.metrics.records, table, op, outcome).inc()

    def _observe(self, metric: PlainHistogram, labels: tuple[str, ...], amount: float) -> None:
        if threading.get_ident() == self._loop_thread:
            observed = self._observed.get(metric)
            if observed is None:
                observed = self._observed[metric] = []
            observed.append((labels, amount))
        else:
            metric.observe(labels, amount)

    def _flush_metrics(self) -> None:
        """Add what the consumer thread counted and observed to the metrics: once per fetch,
        as they take a lock on every change."""
        m = self.metrics
        for (table, op, outcome), n in self._tally.items():
            m.child(m.records, table, op, outcome).inc(n)
        self._tally.clear()
        for metric, observed in self._observed.items():
            metric.observe_all(observed)
            observed.clear()
        oldest: dict[str, float] = {}
        now_ms = time.time() * 1000
        for (topic, _), work in self._partitions.items():
            table = (self._topics.get(topic) or self._topic(topic))[1] or topic
            ts = work.oldest_ms
            # 0: no record waits (or it has no timestamp, librdkafka's -1)
            age = (now_ms - ts) / 1000 if ts is not None and ts > 0 else 0.0
            oldest[table] = max(oldest.get(table, 0.0), age)
        m.set_oldest_unfinished(oldest)

    def _decode(self, msg: Message, outbox: bool) -> Event:
        try:
            return self.decoder.decode_message(msg, outbox=outbox)
        except RegistryError:
            pass
        # A registry outage is not the record's fault: wait it out rather than park the record.
        return self._persist(
            "registry",
            RegistryError,
            lambda: self.decoder.decode_message(msg, outbox=outbox),
            self._stop.wait,
        )

    def _persist(self, what: str, errors: type[Exception], call: Callable[[], T], wait: Wait) -> T:
        """``call()`` until it stops raising ``errors`` (an outage, not a bad record), with
        backoff; `Stopping` if ``wait`` says to give up meanwhile."""
        attempt = 0
        while True:
            try:
                return call()
            except errors as exc:
                attempt += 1
                delay = self.dispatcher.backoff.delay(min(attempt, 8))
                log.error(f"{what}.unavailable", error=str(exc), retry_in_s=round(delay, 2))
                if wait(delay):
                    raise Stopping from exc

    def _unrouted(self, msg: Message, event: Event) -> Handled:
        """No handler for the record's table or event type: skipped and counted (with a
        warning the first time), or dead-lettered, as ``settings.unrouted`` says."""
        table, op = self._labels(event)
        self._count("unrouted", table, op)
        if isinstance(event, DomainEvent):
            what, error = f"event type {event.type!r}", "UnknownEventType"
            detail = {"event_type": event.type, "aggregate_type": event.aggregate_type}
        else:
            what, error, detail = f"table {table!r}", "UnroutedTable", {}
        if self.settings.unrouted == "dead-letter":
            reason = f"no handler for {what}"
            self._park(msg, reason, error, wait=self._stop.wait, table=table)
            return Handled(*_coordinates(msg), event, parked=(reason,))
        if what not in self._warned:
            self._warned.add(what)
            log.warning(
                "record.unrouted",
                **_where(msg),
                table=table,
                **detail,
                note=f"no handler for {what}; skipped and counted",
            )
        return Handled(*_coordinates(msg), event)

    def park(self, msg: Message, reason: str, error: str) -> None:
        """Send a record to the dead-letter topic from outside the consumer loop (replay)."""
        self._park(msg, reason, error, wait=self._stop.wait)

    def _park(
        self,
        msg: Message,
        reason: str,
        error: str,
        *,
        wait: Wait,
        handler: str = "",
        table: str = "",
        attempts: int = 0,
    ) -> None:
        """Send the record to the dead-letter topic; wait out a broker outage (`Stopping` if
        ``wait`` gives up: the record is then not finished)."""
        topic, partition, offset = _coordinates(msg)
        kind, timestamp = msg.timestamp()
        rejected = Rejected(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp if kind else None,
            key=msg.key(),
            value=msg.value(),
            headers=record_headers(msg),
            reason=reason,
            error=error,
            handler=handler,
            table=table,
            attempts=attempts,
        )
        self._persist("dead_letter", KafkaException, lambda: self.dead_letters.send(rejected), wait)
        log.error(
            "record.dead_lettered",
            topic=topic,
            partition=partition,
            offset=offset,
            table=table,
            handler=handler,
            error=error,
            reason=reason,
            dead_letter_topic=self.dead_letters.topic,
        )
        self.metrics.dead_lettered.labels(table, handler, error).inc()


def _coordinates(msg: Message) -> tuple[str, int, int]:
    return str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)


def _where(msg: Message) -> dict[str, Any]:
    topic, partition, offset = _coordinates(msg)
    return {"topic": topic, "partition": partition, "offset": offset}


def _names(partitions: Sequence[TopicPartition]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]


def record_headers(msg: Message) -> tuple[tuple[str, bytes | None], ...]:
    raw = msg.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else raw
    # A header without a value is kept as one: the parked copy is the record as it was.
    return tuple((k, v.encode() if isinstance(v, str) else v) for k, v in pairs)
