"""The consumer: one fetch at a time down the stages, fetch > drop > decode > gate and route >
execute > offsets, each a module of its own; this one wires them and runs the loop.

At-least-once: a record's offset is stored only once every handler that wants it is done
or the record is in the dead-letter topic, and only when every record before it in its
partition is too; stored offsets are committed every second, when partitions are revoked
and on close. Records with the same key are handled one at a time, in order; records with
different keys run on up to ``concurrency`` worker threads, or on the consumer thread itself
for sync handlers that have proven quick. At most about ``max_in_flight`` records are held:
once that many are, a partition holding its share of them pauses until half of that is
done, and the others go on.
"""

from __future__ import annotations

import inspect
import threading
import time

import structlog
from confluent_kafka import Consumer, Message
from prometheus_client import generate_latest
from structlog.contextvars import bind_contextvars

from cdc.decoding import Decoder, decoder_for
from cdc.logs import readable
from cdc.routing import Handler, Router, TableHandler
from cdc.runtime.capture_watch import CaptureWatcher
from cdc.runtime.consumer_config import consumer_config
from cdc.runtime.context import Outgoing, Resources
from cdc.runtime.control import Controls, ControlTail, control_topic
from cdc.runtime.dead_letter import DeadLetterSink
from cdc.runtime.dead_letter_tail import DeadLetterTail
from cdc.runtime.decode import DecodeStage
from cdc.runtime.dispatch import Dispatcher
from cdc.runtime.drop import Drops
from cdc.runtime.execute import Executor
from cdc.runtime.fetch import Fetcher
from cdc.runtime.held_keys import HeldKeys
from cdc.runtime.housekeeping import LedgerPruner
from cdc.runtime.limits import Pacer
from cdc.runtime.metrics import Endpoint, Metrics, Probes
from cdc.runtime.offsets import Offsets
from cdc.runtime.park import Parker
from cdc.runtime.process_metrics import ProcessMetrics
from cdc.runtime.records import Handled, Observer, coordinates, record_headers
from cdc.runtime.rewind import carry_out
from cdc.runtime.route import RouteStage
from cdc.runtime.runs import Backoff
from cdc.runtime.subscription import Subscription
from cdc.runtime.tally import Tally
from cdc.settings import Settings
from cdc.tables.config import OutboxOptions, WatchedTables
from cdc.tables.workloads import DEFAULT_WORKLOAD, RateLimit

__all__ = ["Handled", "Observer", "Runtime", "record_headers"]
log = structlog.get_logger("cdc.consumer")


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
        workload: str = DEFAULT_WORKLOAD,
        rate: RateLimit | None = None,
        keep_order: bool = True,
        process: ProcessMetrics | None = None,
    ) -> None:
        s = self.settings = settings
        self.workload = workload
        self.rate = rate
        self.router = router
        self.observer = observer
        outbox = (watched.outbox or OutboxOptions()).table
        self.resources = Resources(settings, outbox, watched.limits)
        self._stop = threading.Event()
        backoff = Backoff(
            s.retry_attempts, s.retry_backoff_s, s.retry_backoff_max_s, s.retry_jitter
        )
        self.metrics = Metrics()
        # What the process watches once (capture, slot, ledger pruning): shared by workloads.
        self.process_metrics = process if process is not None else ProcessMetrics()
        # Handlers whose keys, once parked, hold their later changes (one change at a time:
        # a list or a key's debounced changes are not held).
        ordered = frozenset(
            r.name
            for routes in (*router.routes.values(), *router.event_routes.values())
            for r in routes
            if not r.grouped and _keeps_order(r.handler, keep_order)
        )
        self.held = HeldKeys()
        self.metrics.held_keys.set_function(lambda: len(self.held))
        # Operators' orders (`cdc pause`, `cdc skip`) for this workload.
        self.controls = Controls(workload)
        self.metrics.paused_handlers.set_function(lambda: len(self.controls.paused))
        self.dispatcher = Dispatcher(
            self.resources,
            backoff,
            timeout_s=s.handler_timeout_s,
            pacer=None if rate is None else Pacer(rate.interval_s),
            timed_out=lambda name: self.metrics.timeouts.labels(name).inc(),
            abandoned=self.metrics.abandoned.set,
            held=self.held,
            ordered=ordered,
            controls=self.controls,
            sensitive={t: watched.sensitive_columns(t) for t in watched.tables},
        )
        prefix = watched.connector.topic_prefix
        self.dead_letters = DeadLetterSink(
            self.resources, s.dead_letter_topic or f"{prefix}.dlq", workload
        )
        # Started by `run` (a replay holds only what it parks itself).
        self.tail = (
            DeadLetterTail(
                s,
                self.dead_letters.topic,
                self.held,
                frozenset(h.name for h in router.handlers),
                self.resources.limits,
            )
            if ordered
            else None
        )
        self.control_tail: ControlTail | None = ControlTail(
            s,
            control_topic(prefix),
            self.controls,
            self.resources.limits,
            lambda kind: self.metrics.orders.labels(kind).inc(),
        )
        self.subscription = Subscription(
            watched, router, self.dead_letters.topic, events=workload == DEFAULT_WORKLOAD
        )
        self.topics = self.subscription.topics
        self.encoding = watched.connector.encoding.value
        self.decoder = decoder or decoder_for(watched.connector.encoding, s.registry_url)
        self.probes = Probes()
        self.capture = CaptureWatcher(settings, watched, self.process_metrics, self.probes)
        self.pruner = LedgerPruner(self.resources, self.process_metrics, s.ledger_prune_interval_s)
        self.endpoint: Endpoint | None = None
        # Room for every batch handler's list to fill twice over: a smaller window would
        # close the lists before they are full.
        lists = sum(h.batch or 0 for h in router.handlers if isinstance(h, TableHandler))
        self.window = max(s.max_in_flight, 2 * lists)
        # The stages, in the order a batch goes through them.
        self.tally = Tally(self.metrics)
        self.offsets = Offsets(self.metrics, s.shutdown_deadline_s)
        self.fetcher = Fetcher(
            consumer_config(s, self.resources.limits),
            self.offsets,
            self.metrics,
            window=self.window,
            refused_timeout_s=s.kafka_refused_timeout_s,
        )
        self.parker = Parker(self.dead_letters, self.metrics, backoff, self.held)
        self.drops = Drops(self.decoder, router, self.subscription, s.unrouted)
        self.decode = DecodeStage(self.decoder, self.subscription, self.parker, backoff, self._stop)
        self.route = RouteStage(
            router, self.parker, s.unrouted, self.resources.outbox_table, self._stop
        )
        self.execute = Executor(
            self.dispatcher,
            self.parker,
            self.tally,
            concurrency=s.concurrency,
            asynchronous={h.name for h in router.handlers if inspect.iscoroutinefunction(h.func)},
            observer=observer,
            stop=self._stop,
            lists=router.grouped,
            transaction_limit=max(1, self.window // 2),
            limited=frozenset(h.name for h in router.handlers if self.dispatcher.limited(h)),
            controls=self.controls,
        )
        self.metrics.held_by_pause.set_function(lambda: self.execute.paused.held)

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, serve: bool = True, watch: bool = True) -> None:
        """``serve``: the HTTP endpoint; ``watch``: watch the capture and prune the ledger
        too (each once a process: `Workloads` serves several runtimes)."""
        s = self.settings
        if serve and s.http_port is not None:
            self.endpoint = Endpoint(self.exposition, self.probes, s.http_host, s.http_port).start()
        if watch:
            self.capture.start()
            self.pruner.start()
        bind_contextvars(workload=self.workload)
        consumer = self._consumer()
        self.execute.start(s.concurrency)
        tails = [t.start() for t in (self.tail, self.control_tail) if t is not None]
        orders = -1  # the control orders' version last looked at for rewinds

        def assigned() -> None:
            nonlocal orders
            orders = -1  # a partition given to us may have a rewind to carry out
            for tail in tails:
                tail.want_end()

        self.fetcher.subscribe(consumer, self.topics, assigned)
        log.debug("consumer.settings", settings=s.masked())
        started = {
            "workload": self.workload,
            "group": s.group_id,
            "tables_file": str(s.watched_tables),
            "encoding": self.encoding,
            "topics": self.topics,
            # A function with two decorators is one handler.
            "handlers": list(dict.fromkeys(h.name for h in self.router.handlers)),
            "event_types": self.router.event_types(),
            "dead_letter_topic": self.dead_letters.topic,
            "concurrency": s.concurrency,
            "max_in_flight": self.window,
            "timeout_s": s.handler_timeout_s,
            "rate": None if self.rate is None else f"{self.rate.runs}/{self.rate.per_s:g}s",
            "http_port": self.endpoint.port if self.endpoint else None,
        }
        if readable():  # a person has `cdc run`'s summary: the line says what it adds
            started = {k: started[k] for k in ("workload", "group", "dead_letter_topic")}
        log.info("consumer.started", **started)
        tally = self.tally
        tally.bind()
        in_flight = 0
        try:
            while not self._stop.is_set():
                self.probes.beat()
                batch = self.fetcher.fetch(consumer, in_flight)
                # Ready once fetching: a group with no partitions yet (Debezium makes a topic
                # on its table's first change) is still a healthy consumer.
                self.probes.fetching = True
                # Held keys and orders first; with nothing fetched nothing waits (and fetching
                # goes on, so a broker refusing us is still found out). Stopping meanwhile:
                # the batch is read again after a restart.
                if batch and not all(t.caught_up or t.wait(self._stop) for t in tails):
                    break
                if batch:
                    kept = self.drops.batch(batch, tally)
                    decoded = self.decode.batch(kept, tally)
                    routed = self.route.batch(decoded, tally)
                    self.execute.batch(routed, self.offsets.works)
                else:
                    # A fetch's tasks woke one thread while they looked quick; if the first
                    # turned slow (a hang) and no fetch came since, the keys behind it get
                    # threads now, not when it ends.
                    self.execute.workers.submit(())
                    self.execute.resume()  # what a resumed handler held, with no fetch
                control = self.control_tail
                if orders != self.controls.version and (control is None or control.caught_up):
                    version = self.controls.version  # an order folded meanwhile: next time
                    orders = version if self._rewind(consumer) else -1
                self._bookkeeping(consumer)
                in_flight = self.fetcher.flow(consumer, self.execute.transactions.waiting)
                if self.execute.batches.held * 2 >= self.window:
                    # Lists waiting to fill would only hold the window up: write them now.
                    self.execute.batches.flush()
                if self.execute.debounce.held * 2 >= self.window:
                    self.execute.debounce.flush()  # likewise the keys waiting to be quiet
        finally:
            self._shut_down(consumer)

    def _rewind(self, consumer: Consumer) -> bool:
        """Carry out the rewinds ordered for the partitions we own (`cdc rewind`); False:
        some to be tried again."""
        rewinds = self.controls.rewinds
        if not rewinds.orders or self.control_tail is None:
            return True
        topic = self.control_tail.topic

        def mark(key: str, value: bytes) -> None:
            self.resources.send([Outgoing(topic, value, key.encode())])

        return carry_out(consumer, self.offsets, rewinds, mark)

    def exposition(self) -> bytes:
        """Its series and the process's, in the text format."""
        return self.metrics.exposition() + generate_latest(self.process_metrics.registry)

    def _consumer(self) -> Consumer:
        return self.fetcher.connect()

    def _bookkeeping(self, consumer: Consumer) -> None:
        """Once per batch: the lists due, the transactions' ENDs that may move, the metrics
        counted meanwhile, and the offsets that moved."""
        self.execute.batches.due()
        self.execute.debounce.due()
        if self.router.transaction_routes:
            topics_of = self.subscription.transaction_topics
            self.execute.transactions.settle(consumer, self.offsets.works, topics_of)
        self.tally.flush()
        self.offsets.oldest_unfinished(self.subscription.table_of)
        self.offsets.store(consumer)

    def _shut_down(self, consumer: Consumer) -> None:
        """Stop fetching; let running work finish until the deadline; commit what finished."""
        self.probes.stopping = True
        deadline = time.monotonic() + self.settings.shutdown_deadline_s
        self.execute.batches.flush()  # what the lists hold is done before their offsets move
        self.execute.debounce.flush()
        for work in list(self.offsets.works.values()):
            work.hurry.set()  # changes waiting for a retry are read again after a restart
        workers = self.execute.workers
        finished = workers.wait_idle(self.settings.shutdown_deadline_s)
        self.offsets.shut_down(deadline)
        workers.close()
        self._bookkeeping(consumer)
        consumer.close()  # revokes (committing each partition's position) and leaves the group
        self.close()
        log.info(
            "consumer.stopped",
            finished_in_time=finished,
            records=self.metrics.record_totals(),
        )

    def close(self) -> None:
        """Release the handlers' connections, the producer and the HTTP endpoint."""
        for tail in (self.tail, self.control_tail):
            if tail is not None:
                tail.stop()
        self.capture.stop()
        self.pruner.stop()
        self.dispatcher.close()
        self.resources.close()
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    def process(self, msg: Message, only: str | None = None) -> Handled:
        """Take one record all the way on this thread: handled, held back, skipped or parked.
        ``only``: run just the handler of that name (a dead-letter replay)."""
        at = coordinates(msg)
        decoded = self.decode.one(msg, at, self.subscription.kind(at[0])[0], self.tally)
        if isinstance(decoded, Handled):
            return decoded
        taken = self.route.one(*decoded, self.tally, only)
        if isinstance(taken, Handled):
            return taken
        handled = self.execute.run(taken, self._stop.wait)
        assert isinstance(handled, Handled)  # it waits, so nothing is left pending
        return handled

    def park(self, msg: Message, reason: str, error: str, handler: str = "") -> None:
        """Send a record to the dead-letter topic from outside the consumer loop (replay)."""
        self.parker.park(msg, reason, error, wait=self._stop.wait, handler=handler)


def _keeps_order(handler: Handler, default: bool) -> bool:
    chosen: bool | None = getattr(handler, "keep_order", None)
    return default if chosen is None else chosen
