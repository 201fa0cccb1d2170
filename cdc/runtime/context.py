"""What a handler gets besides the change or event: database connections, a logger bound to
the record, and a way to publish follow-up records."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import structlog
from confluent_kafka import KafkaException, Producer
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from pydantic import BaseModel

from cdc.events import Change, Changes, DomainEvent
from cdc.outbox import DEFAULT_TABLE, When, aemit, emit
from cdc.runtime.ledger import Ledger
from cdc.runtime.limits import HandlerTimeout
from cdc.settings import Settings
from cdc.tables.limits import RecordLimits

Connection = psycopg.Connection[tuple[Any, ...]]
AsyncConnection = psycopg.AsyncConnection[tuple[Any, ...]]


@dataclass(frozen=True)
class Outgoing:
    """A follow-up record a handler published."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    partition: int = -1  # -1: the partitioner's choice (by key)


def _encode(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, BaseModel):
        return value.model_dump_json().encode()
    return json.dumps(value, default=str, separators=(",", ":")).encode()


class Resources:
    """Connections shared by every handler run, opened on first use and closed once; and the
    outbox table the watched-tables file declares, for ``ctx.emit``; and how large a record
    may be (our producer takes the largest a parked record can be)."""

    def __init__(
        self,
        settings: Settings,
        outbox_table: str = DEFAULT_TABLE,
        limits: RecordLimits | None = None,
    ) -> None:
        self.settings = settings
        self.outbox_table = outbox_table
        self.limits = limits or RecordLimits()
        self._lock = threading.RLock()  # ledger() opens the pool while holding it
        self._async_lock = asyncio.Lock()
        self._pool: ConnectionPool[Connection] | None = None
        self._async_pool: AsyncConnectionPool[AsyncConnection] | None = None
        self._producer: Producer | None = None
        self._ledger: Ledger | None = None

    def _pool_args(self) -> dict[str, Any]:
        return {
            "conninfo": self.settings.pg_conninfo(),
            "kwargs": {"password": self.settings.pg_password.get_secret_value()},
            "min_size": 1,
            "max_size": self.settings.pg_pool_size or self.settings.concurrency,
            "open": False,
            "name": "cdc-handlers",
        }

    def pool(self) -> ConnectionPool[Connection]:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(**self._pool_args())
                self._pool.open(wait=True, timeout=30)
            return self._pool

    async def async_pool(self) -> AsyncConnectionPool[AsyncConnection]:
        # Async handlers all run on the dispatcher's one event loop, concurrently.
        async with self._async_lock:
            if self._async_pool is None:
                pool = AsyncConnectionPool(**self._pool_args())
                await pool.open(wait=True, timeout=30)
                self._async_pool = pool
        return self._async_pool

    def ledger(self) -> Ledger:
        """The processed-changes ledger, its table created on first use."""
        with self._lock:
            if self._ledger is None:
                ledger = Ledger(self.settings.ledger_table)
                with self.pool().connection() as conn:
                    ledger.create(conn)
                    # Kafka keeps records for days, not forever: older rows can never match
                    # a redelivery. Pruned here and then every ledger_prune_interval_s
                    # (runtime/housekeeping.py).
                    ledger.prune(conn, self.settings.ledger_retention_days)
                self._ledger = ledger
            return self._ledger

    def prune_ledger(self) -> int | None:
        """Forget ledger rows past the retention; None while no handler has used the ledger."""
        with self._lock:
            ledger = self._ledger
        if ledger is None:
            return None
        with self.pool().connection() as conn:
            return ledger.prune(conn, self.settings.ledger_retention_days)

    def producer(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(
                    self.settings.kafka_config(
                        **{
                            "enable.idempotence": True,
                            "acks": "all",
                            "linger.ms": 5,
                            "message.max.bytes": self.limits.parked,
                        }
                    )
                )
            return self._producer

    def send(self, records: list[Outgoing], timeout: float = 30.0) -> list[tuple[int, int]]:
        """Produce and wait until the broker has every record; raise if one failed. Where
        each landed (partition, offset), in the order delivered.

        It waits for these records only, not for the producer's whole queue (`flush`): with
        several threads publishing, each would wait for the others' later records too, and
        on a slow network that is several round trips a call."""
        if not records:
            return []
        producer = self.producer()
        failures: list[str] = []
        landed: list[tuple[int, int]] = []
        lock = threading.Lock()
        all_done = threading.Event()
        left = len(records)

        def delivered(err: Any, msg: Any) -> None:  # on whichever thread polls
            nonlocal left
            with lock:
                if err is not None:
                    failures.append(f"{msg.topic()}: {err}")
                else:
                    landed.append((msg.partition(), msg.offset()))
                left -= 1
                if not left:
                    all_done.set()

        for r in records:
            producer.produce(
                r.topic,
                r.value,
                r.key,
                partition=r.partition,
                headers=list(r.headers),
                on_delivery=delivered,
            )
        deadline = time.monotonic() + timeout
        while not all_done.is_set() and (wait := deadline - time.monotonic()) > 0:
            # Serves every thread's callbacks; another thread may serve ours meanwhile.
            producer.poll(min(wait, 0.005))
        with lock:
            if failures or left:
                raise KafkaException(
                    f"{len(failures) + left} of {len(records)} record(s) not delivered: "
                    + "; ".join(failures or ["timed out"])
                )
            return list(landed)

    async def aclose(self) -> None:
        if self._async_pool is not None:
            await self._async_pool.close()
            self._async_pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None


class Context:
    """Given to a handler with each change or domain event.

    (Slotted, its logger bound on first use: one is made per handler run, and most runs
    neither log nor publish.)"""

    __slots__ = (
        "_claimed",
        "_log",
        "attempt",
        "event",
        "fenced",
        "handler",
        "ledger",
        "published",
        "resources",
    )

    def __init__(
        self,
        event: Change | DomainEvent | Changes,  # Changes: for a handler that takes a list
        handler: str,
        attempt: int,
        log: Any,  # None: a `RecordLog` of the event, made when first used
        resources: Resources,
        ledger: Ledger | None = None,  # set for a handler declared with ledger=True
        published: list[Outgoing] | None = None,
    ) -> None:
        self.event = event
        self.handler = handler
        self.attempt = attempt
        self._log = log
        self.resources = resources
        self.ledger = ledger
        self.published: list[Outgoing] = [] if published is None else published
        self._claimed = False
        # Set when the attempt ran past its time limit: what it would still commit is not.
        self.fenced: HandlerTimeout | None = None

    @property
    def log(self) -> Any:
        """A structlog logger bound to topic, partition, offset, table, op, handler."""
        if self._log is None:
            self._log = RecordLog(self.event, self.handler)
        return self._log

    @log.setter
    def log(self, value: Any) -> None:
        self._log = value

    def __repr__(self) -> str:
        return f"Context(handler={self.handler!r}, attempt={self.attempt}, event={self.event!r})"

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection in a transaction: committed when the block ends, rolled back
        if it raises. For a ledger handler the transaction also records the change, and
        raises AlreadyProcessed (the change is skipped) if it was recorded before."""
        with self.resources.pool().connection() as conn:
            if self._ledger_claim():
                assert self.ledger is not None
                self.ledger.claim(conn, self.handler, self.event.idempotency_key)
            yield conn
            if self.fenced is not None:
                raise self.fenced  # rolled back: another attempt has taken over

    @contextlib.asynccontextmanager
    async def aconnection(self) -> AsyncIterator[AsyncConnection]:
        """The same for async handlers."""
        pool = await self.resources.async_pool()
        async with pool.connection() as conn:
            if self._ledger_claim():
                assert self.ledger is not None
                await self.ledger.aclaim(conn, self.handler, self.event.idempotency_key)
            yield conn
            if self.fenced is not None:
                raise self.fenced

    def _ledger_claim(self) -> bool:
        if self.ledger is None:
            return False
        if self._claimed:
            # A second transaction would commit apart from the ledger row: not once.
            raise RuntimeError(
                f"{self.handler} is a ledger handler: its writes go in one ctx.connection() block"
            )
        self._claimed = True
        return True

    def emit(
        self,
        conn: Connection,
        aggregate_type: str,
        aggregate_id: object,
        event_type: str,
        payload: Any,
        *,
        deliver_at: datetime | None = None,  # or deliver_after: delayed, as for `cdc.emit`
        deliver_after: timedelta | float | None = None,
    ) -> uuid.UUID:
        """`cdc.emit` into the declared outbox table: a follow-up domain event, in ``conn``'s
        transaction (with a ledger handler: committed with the ledger row, or not at all)."""
        table = self.resources.outbox_table
        when = When(table=table, deliver_at=deliver_at, deliver_after=deliver_after)
        return emit(conn, aggregate_type, aggregate_id, event_type, payload, **when)

    async def aemit(
        self,
        conn: AsyncConnection,
        aggregate_type: str,
        aggregate_id: object,
        event_type: str,
        payload: Any,
        *,
        deliver_at: datetime | None = None,
        deliver_after: timedelta | float | None = None,
    ) -> uuid.UUID:
        """`emit` for ``ctx.aconnection()``."""
        table = self.resources.outbox_table
        when = When(table=table, deliver_at=deliver_at, deliver_after=deliver_after)
        return await aemit(conn, aggregate_type, aggregate_id, event_type, payload, **when)

    def publish(
        self,
        topic: str,
        value: Any,
        *,
        key: Any = None,
        headers: Mapping[str, str | bytes] | None = None,
    ) -> None:
        """Publish a follow-up record once the handler succeeds (never for a failed attempt).

        ``value`` and ``key``: bytes, str, a pydantic model or anything JSON can encode. The
        record carries ``cdc.cause`` (the idempotency key of this change) so consumers
        downstream can drop the duplicates a redelivery produces."""
        extra = [(k, v if isinstance(v, bytes) else v.encode()) for k, v in (headers or {}).items()]
        cause = [
            ("cdc.cause", self.event.idempotency_key.encode()),
            ("cdc.handler", self.handler.encode()),
        ]
        self.published.append(Outgoing(topic, _encode(value), _encode(key), tuple(cause + extra)))


# One proxy for every run: with `cache_logger_on_first_use` it builds its logger once, and
# binding a run's fields is then a dict copy (a new proxy per run builds a logger each time).
_HANDLER_LOG = structlog.get_logger("cdc.handler")


class RecordLog:
    """A logger bound to a record (topic, partition, offset, table and op, or the domain
    event's type and ids) and its handler. Bound on first use: most runs log nothing, and
    binding costs about what running a quick handler does."""

    __slots__ = ("_bound", "_event", "_handler")

    def __init__(self, event: Change | DomainEvent | Changes, handler: str) -> None:
        self._event = event
        self._handler = handler
        self._bound: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._bound is None:
            event = self._event
            k = event.kafka
            what: dict[str, Any]
            if isinstance(event, Changes):
                what = {"tables": event.tables, "changes": len(event)}
                if event.transaction is not None:
                    what["transaction"] = event.transaction
            elif isinstance(event, Change):
                what = {"table": event.table, "op": event.op.value}
            else:
                what = {
                    "event_type": event.type,
                    "aggregate_type": event.aggregate_type,
                    "aggregate_id": event.aggregate_id,
                    "event_id": event.id,
                }
            at = (
                {}
                if k is None
                else {"topic": k.topic, "partition": k.partition, "offset": k.offset}
            )
            self._bound = _HANDLER_LOG.bind(**at, **what, handler=self._handler)
        return getattr(self._bound, name)


def debug_enabled() -> bool:
    """Whether the logging configured now lets DEBUG through."""
    enabled = getattr(_HANDLER_LOG.bind(), "is_enabled_for", None)
    return True if enabled is None else bool(enabled(logging.DEBUG))
