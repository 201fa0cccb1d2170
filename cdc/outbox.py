"""Write domain events to the outbox table, in the caller's own transaction.

    with conn.transaction():
        conn.execute("INSERT INTO orders ...")
        emit(conn, "order", order_id, "order-placed", OrderPlaced(...))

The row is inserted and deleted at once: the table stays empty, while PostgreSQL's log keeps
the insert for Debezium, whose Outbox Event Router turns it into a record on the aggregate
type's topic. The event exists if and only if the transaction commits.

Inside a handler, ``ctx.emit(conn, ...)`` does the same with the outbox table the
watched-tables file declares.

With ``deliver_at=`` (an aware datetime) or ``deliver_after=`` (a timedelta or seconds, from
the database's clock) the event waits in ``<outbox>_scheduled`` instead, in the same
transaction, until the scheduler of `cdc run` moves it into the outbox at its time
(`cdc.schedule`).
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any, TypedDict

import psycopg
from psycopg import sql
from pydantic import BaseModel

from cdc.errors import EmitError
from cdc.tables.config import OutboxOptions
from cdc.tracing import current_traceparent

DEFAULT_TABLE = OutboxOptions().table  # what `outbox: {}` declares
# Part of a Kafka topic name (`<outbox topic prefix>.<aggregate type>`).
_AGGREGATE_TYPE = re.compile(r"[A-Za-z0-9_-]{1,200}")
_LIMIT = 255  # the outbox table's varchar columns

Connection = psycopg.Connection[Any]
AsyncConnection = psycopg.AsyncConnection[Any]


class When(TypedDict):
    """Where and when an event goes: `emit`'s keyword arguments, as ``ctx.emit`` passes them."""

    table: str
    deliver_at: datetime | None
    deliver_after: timedelta | float | None


def emit(
    conn: Connection,
    aggregate_type: str,
    aggregate_id: object,
    event_type: str,
    payload: Any,
    *,
    table: str = DEFAULT_TABLE,
    event_id: uuid.UUID | None = None,
    deliver_at: datetime | None = None,
    deliver_after: timedelta | float | None = None,
) -> uuid.UUID:
    """Write one event to the outbox in ``conn``'s transaction (begun if none is); return its
    id. It commits or rolls back with the caller's other writes.

    ``payload``: a pydantic model or anything JSON can encode. ``table``: the outbox table
    as declared under ``outbox:`` in the watched-tables file. On an autocommit connection
    the insert and delete run in a transaction of their own. Raises `EmitError` for what
    would break downstream.

    ``deliver_at`` / ``deliver_after``: deliver the event then, not now (at most one)."""
    insert, delete, params = _statements(aggregate_type, aggregate_id, event_type, payload, table)
    event_id = event_id or uuid.uuid4()
    if deliver_at is not None or deliver_after is not None:
        later = _later(table, deliver_at, deliver_after)
        conn.execute(later[0], (event_id, *later[1:], *params))
        return event_id
    # `transaction()` outside a transaction commits at its end: only where nothing else would.
    with conn.transaction() if conn.autocommit else contextlib.nullcontext():
        conn.execute(insert, (event_id, *params))
        conn.execute(delete, (event_id,))
    return event_id


async def aemit(
    conn: AsyncConnection,
    aggregate_type: str,
    aggregate_id: object,
    event_type: str,
    payload: Any,
    *,
    table: str = DEFAULT_TABLE,
    event_id: uuid.UUID | None = None,
    deliver_at: datetime | None = None,
    deliver_after: timedelta | float | None = None,
) -> uuid.UUID:
    """`emit` for an async connection."""
    insert, delete, params = _statements(aggregate_type, aggregate_id, event_type, payload, table)
    event_id = event_id or uuid.uuid4()
    if deliver_at is not None or deliver_after is not None:
        later = _later(table, deliver_at, deliver_after)
        await conn.execute(later[0], (event_id, *later[1:], *params))
        return event_id
    async with conn.transaction() if conn.autocommit else contextlib.nullcontext():
        await conn.execute(insert, (event_id, *params))
        await conn.execute(delete, (event_id,))
    return event_id


def _statements(
    aggregate_type: str,
    aggregate_id: object,
    event_type: str,
    payload: Any,
    table: str,
) -> tuple[sql.Composed, sql.Composed, tuple[str, str, str, str, str | None]]:
    """The insert and delete, and the insert's values after the event id."""
    problems = []
    if not isinstance(aggregate_type, str) or not _AGGREGATE_TYPE.fullmatch(aggregate_type):
        problems.append(
            f"aggregate_type {aggregate_type!r} names a topic: letters, digits, _ and - only"
        )
    if not isinstance(event_type, str) or not 0 < len(event_type.strip()) <= _LIMIT:
        problems.append(f"event_type {event_type!r} must be a non-empty string (≤ {_LIMIT})")
    key = str(aggregate_id)
    if aggregate_id is None or not 0 < len(key) <= _LIMIT:
        problems.append(f"aggregate_id {aggregate_id!r} must be a non-empty value (≤ {_LIMIT})")
    parts = table.split(".")
    if len(parts) != 2:
        problems.append(f"table {table!r} must be schema.table")
    if payload is None:
        problems.append("payload is None: an event carries a JSON value (`{}` for none)")
    if problems:
        raise EmitError(problems)
    target = sql.Identifier(*parts)
    traceparent = current_traceparent()
    # The trace the event was emitted in, for the span of the handler it reaches.
    insert = sql.SQL(
        "INSERT INTO {} (id, aggregatetype, aggregateid, type, payload, traceparent) "
        "VALUES (%s, %s, %s, %s, %s::jsonb, %s)"
    ).format(target)
    delete = sql.SQL("DELETE FROM {} WHERE id = %s").format(target)
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    try:
        # Fails here, in the caller's transaction, rather than as a bad record downstream.
        encoded = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EmitError([f"the payload is not JSON: {exc}"]) from exc
    return insert, delete, (aggregate_type, key, event_type, encoded, traceparent)


def _later(
    table: str, deliver_at: datetime | None, deliver_after: timedelta | float | None
) -> tuple[sql.Composed, datetime | None, timedelta | None]:
    """The delayed event's insert, its time, and its delay (one of the two is None)."""
    from cdc.errors import ConfigError
    from cdc.tables.schedule_store import delayed_insert

    problems = []
    if deliver_at is not None and deliver_after is not None:
        problems.append("give deliver_at or deliver_after, not both")
    if deliver_at is not None and (
        not isinstance(deliver_at, datetime) or deliver_at.utcoffset() is None
    ):
        problems.append(f"deliver_at {deliver_at!r} must be a datetime with a time zone")
    delay = deliver_after
    if isinstance(delay, int | float) and not isinstance(delay, bool):
        delay = timedelta(seconds=delay)
    if deliver_after is not None and not isinstance(delay, timedelta):
        problems.append(f"deliver_after {deliver_after!r} must be a timedelta or seconds")
    if problems:
        raise EmitError(problems)
    try:
        insert = delayed_insert(table)
    except ConfigError as exc:
        raise EmitError(exc.problems) from exc
    return insert, deliver_at, delay if isinstance(delay, timedelta) else None
