"""Write domain events to the outbox table, in the caller's own transaction.

    with conn.transaction():
        conn.execute("INSERT INTO orders ...")
        emit(conn, "order", order_id, "order-placed", OrderPlaced(...))

The row is inserted and deleted at once: the table stays empty, while PostgreSQL's log keeps
the insert for Debezium, whose Outbox Event Router turns it into a record on the aggregate
type's topic. The event exists if and only if the transaction commits.

Inside a handler, ``ctx.emit(conn, ...)`` does the same with the outbox table the
watched-tables file declares.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from typing import Any

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


def emit(
    conn: Connection,
    aggregate_type: str,
    aggregate_id: object,
    event_type: str,
    payload: Any,
    *,
    table: str = DEFAULT_TABLE,
    event_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Write one event to the outbox in ``conn``'s transaction (begun if none is); return its
    id. It commits or rolls back with the caller's other writes.

    ``payload``: a pydantic model or anything JSON can encode. ``table``: the outbox table
    as declared under ``outbox:`` in the watched-tables file. On an autocommit connection
    the insert and delete run in a transaction of their own. Raises `EmitError` for what
    would break downstream."""
    insert, delete, params = _statements(aggregate_type, aggregate_id, event_type, payload, table)
    event_id = event_id or uuid.uuid4()
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
) -> uuid.UUID:
    """`emit` for an async connection."""
    insert, delete, params = _statements(aggregate_type, aggregate_id, event_type, payload, table)
    event_id = event_id or uuid.uuid4()
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
