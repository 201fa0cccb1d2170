"""The consumer loop: fetch, decode, route, run handlers, park what fails, store the offset.

At-least-once: a record's offset is stored only once every handler that wants it is done
or the record is in the dead-letter topic; stored offsets are committed every second, when
partitions are revoked and on close. Records are handled one at a time, in partition order.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from cdc.decoding import Decoder, decoder_for
from cdc.errors import DecodeError, RegistryError
from cdc.events import Change, Event
from cdc.routing import Router
from cdc.runtime.context import Resources
from cdc.runtime.dead_letter import DeadLetterSink, Rejected
from cdc.runtime.dispatch import Backoff, Dispatcher, HandlerRun, Outcome, Stopping
from cdc.settings import Settings
from cdc.tables.config import WatchedTables

log = structlog.get_logger("cdc.consumer")
T = TypeVar("T")


@dataclass(frozen=True)
class Handled:
    """What became of one record: its event (None if it could not be decoded) and each
    handler's run; ``parked`` says why it went to the dead-letter topic, if it did."""

    topic: str
    partition: int
    offset: int
    event: Event | None
    runs: tuple[HandlerRun, ...] = ()
    parked: tuple[str, ...] = field(default=())


Observer = Callable[[Handled], None]


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
        self.resources = Resources(settings)
        self._stop = threading.Event()
        self.dispatcher = Dispatcher(
            self.resources,
            Backoff(
                settings.retry_attempts, settings.retry_backoff_s, settings.retry_backoff_max_s
            ),
            wait=self._stop.wait,
        )
        prefix = watched.connector.topic_prefix
        self.dead_letters = DeadLetterSink(
            self.resources, settings.dead_letter_topic or f"{prefix}.dlq"
        )
        self.decoder = decoder or decoder_for(watched.connector.encoding, settings.registry_url)
        self.topics = [f"{prefix}.{table}" for table in router.tables()]
        self.counts: Counter[tuple[str, str]] = Counter()  # (outcome, table)
        self.assigned = threading.Event()
        self._warned: set[str] = set()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "group.id": self.settings.group_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "enable.auto.offset.store": False,
                "auto.commit.interval.ms": 1000,
                # Topics appear when Debezium first writes to them; notice them quickly.
                "topic.metadata.refresh.interval.ms": 5000,
            }
        )

        def assigned(c: Consumer, partitions: list[Any]) -> None:
            log.info(
                "partitions.assigned", partitions=[f"{p.topic}[{p.partition}]" for p in partitions]
            )
            self.assigned.set()

        def revoked(c: Consumer, partitions: list[Any]) -> None:
            _commit(c)
            log.info(
                "partitions.revoked", partitions=[f"{p.topic}[{p.partition}]" for p in partitions]
            )

        consumer.subscribe(self.topics, on_assign=assigned, on_revoke=revoked)
        log.info(
            "consumer.started",
            group=self.settings.group_id,
            topics=self.topics,
            handlers=[h.name for h in self.router.handlers],
            dead_letter_topic=self.dead_letters.topic,
        )
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        log.warning("kafka.error", error=str(err))
                    continue
                try:
                    self.process(msg)
                except Stopping:
                    break  # this record was not finished: it is read again after a restart
                consumer.store_offsets(msg)
        finally:
            consumer.close()  # commits the stored offsets
            self.dispatcher.close()
            self.resources.close()
            log.info(
                "consumer.stopped", counts={f"{o}/{t}": n for (o, t), n in self.counts.items()}
            )

    def process(self, msg: Message) -> Handled:
        """Take one record all the way: handled, held back, skipped or parked."""
        topic, partition, offset = (
            str(msg.topic()),
            int(msg.partition() or 0),
            int(msg.offset() or 0),
        )
        try:
            event = self._decode(msg)
        except DecodeError as exc:
            self._park(msg, exc.reason, "DecodeError")
            return self._done(Handled(topic, partition, offset, None, parked=(str(exc),)))
        table = event.table
        if not self.router.gate.admit(event):
            self.counts["held_back", table] += 1
            return self._done(Handled(topic, partition, offset, event))
        routes = self.router.routes_for(event)
        if routes is None:
            return self._done(self._unrouted(msg, event))
        runs: list[HandlerRun] = []
        parked: list[str] = []
        for route in routes:
            assert isinstance(event, Change)
            run = self.dispatcher.run(route, event)
            runs.append(run)
            self.counts[run.outcome.value, table] += 1
            if run.outcome is Outcome.DEAD_LETTER:
                error = type(run.error).__name__ if run.error is not None else "InvalidResult"
                self._park(
                    msg, run.reason, error, handler=route.name, table=table, attempts=run.attempts
                )
                parked.append(run.reason)
        if not routes:
            self.counts["filtered", table] += 1
        return self._done(Handled(topic, partition, offset, event, tuple(runs), tuple(parked)))

    def _done(self, handled: Handled) -> Handled:
        if self.observer is not None:
            self.observer(handled)
        return handled

    def _decode(self, msg: Message) -> Event:
        # A registry outage is not the record's fault: wait it out rather than park the record.
        return self._persist("registry", RegistryError, lambda: self.decoder.decode_message(msg))

    def _persist(self, what: str, errors: type[Exception], call: Callable[[], T]) -> T:
        """``call()`` until it stops raising ``errors`` (an outage, not a bad record), with
        backoff; `Stopping` if the consumer is stopped meanwhile."""
        attempt = 0
        while True:
            try:
                return call()
            except errors as exc:
                attempt += 1
                delay = self.dispatcher.backoff.delay(min(attempt, 8))
                log.error(f"{what}.unavailable", error=str(exc), retry_in_s=round(delay, 2))
                if self._stop.wait(delay):
                    raise Stopping from exc

    def _unrouted(self, msg: Message, event: Event) -> Handled:
        table = event.table
        coordinates = (str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0))
        self.counts["unrouted", table] += 1
        if self.settings.unrouted == "dead-letter":
            reason = f"no handler for table {table!r}"
            self._park(msg, reason, "UnroutedTable", table=table)
            return Handled(*coordinates, event, parked=(reason,))
        if table not in self._warned:
            self._warned.add(table)
            log.warning(
                "table.unrouted",
                table=table,
                topic=coordinates[0],
                note="no handler; skipped and counted",
            )
        return Handled(*coordinates, event)

    def _park(
        self,
        msg: Message,
        reason: str,
        error: str,
        *,
        handler: str = "",
        table: str = "",
        attempts: int = 0,
    ) -> None:
        rejected = Rejected(
            topic=str(msg.topic()),
            partition=int(msg.partition() or 0),
            offset=int(msg.offset() or 0),
            key=msg.key(),
            value=msg.value(),
            headers=_headers(msg),
            reason=reason,
            error=error,
            handler=handler,
            table=table,
            attempts=attempts,
        )
        self._persist("dead_letter", KafkaException, lambda: self.dead_letters.send(rejected))
        log.error(
            "record.dead_lettered",
            topic=rejected.topic,
            partition=rejected.partition,
            offset=rejected.offset,
            table=table,
            handler=handler,
            error=error,
            reason=reason,
            dead_letter_topic=self.dead_letters.topic,
        )
        self.counts["dead_lettered", table] += 1


def _commit(consumer: Consumer) -> None:
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            log.warning("commit.failed", error=str(exc))


def _headers(msg: Message) -> tuple[tuple[str, bytes], ...]:
    raw = msg.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else raw
    return tuple((k, v if isinstance(v, bytes) else v.encode()) for k, v in pairs if v is not None)
