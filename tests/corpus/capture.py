"""Capture the decoder corpus: real Debezium records for one table of every type, in every
encoding and for every operation, with the values psycopg reads back from the same rows; and
domain events through the outbox (one rolled back, so never captured).

    python -m tests.corpus.capture        # uses $CDC_STACK_DIR's stack or starts one

Writes tests/corpus/<encoding>/records.jsonl (+ schemas.json for Avro) and expected.json."""

from __future__ import annotations

import base64
import datetime as dt
import json
import signal
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
from confluent_kafka import Message
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader

from cdc import emit
from cdc.testing import RecordReader, start_stack
from tests.integration.conftest import Pipeline

HERE = Path(__file__).parent
TABLE = "corpus.all_types"
ENCODINGS = ("json", "json-noschema", "avro")
STEPS: list[tuple[str, str, int | None]] = [
    (
        "INSERT INTO corpus.all_types SELECT 4, c_smallint, c_int, c_bigint, c_numeric, "
        "c_numeric_var, c_real, c_double, c_bool, c_text, c_varchar, c_char, c_bytea, c_date, "
        "c_time_ms, c_time_us, c_timetz, c_timestamp_ms, c_timestamp_us, c_timestamptz, "
        "c_interval, c_json, c_jsonb, c_uuid, c_mood, c_int_array, c_text_array, c_default, "
        "c_toast FROM corpus.all_types WHERE id = 1",
        "c",
        4,
    ),
    # The TOASTed column is unchanged: Debezium sends its placeholder under DEFAULT identity.
    ("UPDATE corpus.all_types SET c_int = 7 WHERE id = 4", "u", 4),
    ("UPDATE corpus.all_types SET c_toast = 'short now' WHERE id = 4", "u", 4),
    (
        "UPDATE corpus.all_types SET c_mood = 'sad', c_text_array = '{x}', c_default = 'set' "
        "WHERE id = 2",
        "u",
        2,
    ),
    ("DELETE FROM corpus.all_types WHERE id = 3", "d", 3),
    ("SELECT pg_logical_emit_message(true, 'cdc-corpus', 'hello from the corpus')", "m", None),
    ("TRUNCATE corpus.all_types", "t", None),
]


# (aggregate type, aggregate id, event type, payload, committed)
EVENTS: list[tuple[str, Any, str, Any, bool]] = [
    (
        "order",
        17,
        "order-placed",
        {"order_id": 17, "total": "12.50", "lines": [{"sku": "é-1", "qty": 2}], "note": None},
        True,
    ),
    ("order", 18, "order-placed", {"order_id": 18, "total": "1.00", "lines": []}, False),
    ("invoice", "inv-17", "invoice-sent", {"order_id": 17, "to": "ada@example.org"}, True),
]


class _Rollback(Exception):
    pass


def emit_events(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Emit `EVENTS`, each in a transaction of its own; the committed ones as expected."""
    out = []
    for aggregate_type, aggregate_id, event_type, payload, committed in EVENTS:
        try:
            with conn.transaction():
                event_id = emit(conn, aggregate_type, aggregate_id, event_type, payload)
                if not committed:
                    raise _Rollback
        except _Rollback:
            continue
        out.append(
            {
                "id": str(event_id),
                "type": event_type,
                "aggregate_type": aggregate_type,
                "aggregate_id": str(aggregate_id),
                "payload": payload,
            }
        )
    return out


class _Infinite:
    """Loaders that keep ±infinity (psycopg refuses them by default) as tagged strings."""

    @staticmethod
    def wrap(base: type[Any]) -> type[Any]:
        class Loader(base):  # type: ignore[misc,valid-type]
            def load(self, data: Any) -> Any:
                raw = bytes(data)
                if raw in (b"infinity", b"-infinity"):
                    return {"$infinity": raw.decode()}
                return super().load(data)

        return Loader


def tag(value: Any) -> Any:
    """psycopg values as JSON, typed: the unit tests rebuild the Python values from this."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return {"$float": repr(value)}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, bytes | memoryview):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, list):
        return [tag(v) for v in value]
    if isinstance(value, dict):
        return value if "$infinity" in value else {"$json": value}
    raise TypeError(f"no tag for {type(value).__name__}")


def read_row(conn: psycopg.Connection[Any], row_id: int) -> dict[str, Any] | None:
    cur = conn.execute(
        "SELECT *, c_mood::text AS c_mood, c_json::text AS c_json_text "
        "FROM corpus.all_types WHERE id = %s",
        (row_id,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    names = [d.name for d in cur.description or []]
    out = dict(zip(names, row, strict=True))
    text = out.pop("c_json_text")
    out["c_json"] = json.loads(text) if text else None
    return {k: tag(v) for k, v in out.items()}


def record(msg: Message) -> dict[str, Any]:
    def b64(raw: bytes | None) -> str | None:
        return None if raw is None else base64.b64encode(raw).decode()

    return {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": msg.timestamp()[1],
        "key": b64(msg.key()),
        "value": b64(msg.value()),
        "headers": [[k, b64(v)] for k, v in (msg.headers() or [])],
    }


def main() -> None:
    # A terminated capture still stops the private stack it started (the `with` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with start_stack() as stack, tempfile.TemporaryDirectory() as tmp:
        with psycopg.connect(
            stack.settings().pg_conninfo(), password=stack.app_password, autocommit=True
        ) as conn:
            conn.execute((HERE / "all_types.sql").read_bytes())
            for oid_type, base in (
                ("date", DateLoader),
                ("timestamp", TimestampLoader),
                ("timestamptz", TimestamptzLoader),
            ):
                conn.adapters.register_loader(oid_type, _Infinite.wrap(base))
            expected: dict[str, Any] = {"snapshot": {i: read_row(conn, i) for i in (1, 2, 3, 5)}}
            pipelines = {}
            for encoding in ENCODINGS:
                (Path(tmp) / encoding).mkdir()
                p = Pipeline(stack, Path(tmp) / encoding)
                p.write_file(
                    {TABLE: {}},
                    outbox={},
                    encoding=encoding,
                    heartbeat_interval_ms=1000,
                    transaction_metadata=True,
                )
                p.apply()
                pipelines[encoding] = p
            time.sleep(5)  # let every connector finish its snapshot before the writes
            steps = []
            for statement, op, row_id in STEPS:
                conn.execute(statement)
                after = read_row(conn, row_id) if row_id is not None and op in "cu" else None
                steps.append({"sql": statement, "op": op, "id": row_id, "after": after})
            expected["steps"] = steps
            expected["events"] = emit_events(conn)
        (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True))
        for encoding, p in pipelines.items():
            topics = [
                f"{p.id}.corpus.all_types",
                f"__debezium-heartbeat.{p.id}",
                f"{p.id}.message",
                f"{p.id}.transaction",
                f"{p.outbox_prefix}.order",
                f"{p.outbox_prefix}.invoice",
            ]
            with RecordReader(stack.kafka_bootstrap, topics) as reader:
                msgs = _trim(reader.wait(lambda r, t=topics: _complete(r, t), 120), topics)
            # In the order of `topics`, whichever a reader happened to fetch first.
            msgs.sort(key=lambda m, t=topics: (t.index(m.topic()), m.partition(), m.offset()))
            # Topic names carry the run's prefix; the corpus uses a stable one.
            out = HERE / encoding
            out.mkdir(exist_ok=True)
            lines = [json.dumps(record(m)).replace(p.id, "corpus") for m in msgs]
            (out / "records.jsonl").write_text("\n".join(lines) + "\n")
            if encoding == "avro":
                _save_schemas(stack.registry_url, msgs, out / "schemas.json")
            p.close()
        print(f"corpus written under {HERE}")


def _complete(records: list[Message], topics: list[str]) -> bool:
    data, heartbeat, message, transaction, orders, invoices = topics
    counts = {t: 0 for t in topics}
    for m in records:
        counts[m.topic()] += 1
    # 4 reads, 1 create, 3 updates, 1 delete + tombstone, 1 truncate.
    return (
        counts[data] >= 11
        and counts[heartbeat] >= 1
        and counts[message] >= 1
        and counts[transaction] >= 2
        and counts[orders] >= 1
        and counts[invoices] >= 1
    )


def _trim(records: list[Message], topics: list[str]) -> list[Message]:
    """Every heartbeat action query is a transaction too: keep three heartbeats and the
    BEGIN/END records of the transactions that touched the corpus table."""
    heartbeat, transaction = topics[1], topics[3]
    ends = {
        m.offset()
        for m in records
        if m.topic() == transaction and b"all_types" in (m.value() or b"")
    }
    keep_tx = ends | {offset - 1 for offset in ends}
    beats = [m for m in records if m.topic() == heartbeat][:3]
    return [
        m
        for m in records
        if (m.topic() == transaction and m.offset() in keep_tx)
        or (m.topic() == heartbeat and m in beats)
        or m.topic() not in (transaction, heartbeat)
    ]


def _save_schemas(registry: str, msgs: list[Message], path: Path) -> None:
    ids = {
        int.from_bytes(raw[1:5], "big")
        for m in msgs
        for raw in (m.key(), m.value())
        if raw and raw[0] == 0
    }
    schemas = {
        i: httpx.get(f"{registry}/apis/ccompat/v7/schemas/ids/{i}", timeout=10).json()["schema"]
        for i in sorted(ids)
    }
    path.write_text(json.dumps(schemas, indent=1))


if __name__ == "__main__":
    main()
