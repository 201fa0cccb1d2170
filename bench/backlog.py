"""The throughput benchmarks' backlog: real Debezium records of a small shop schema, captured
from the stack once per encoding, then replicated into pre-filled 4-partition topics.

The capture runs a workload through PostgreSQL with three connectors (JSON with schemas, JSON
without, Avro) streaming the same changes: 2,000 `products` rows already there when the
connectors start (snapshot reads), then inserts, updates and deletes (each delete followed by
its tombstone) on `customers`, `orders` and `products`. Those records, byte for byte, are
produced round-robin per table into `bench_<encoding>.bench.<table>` until the backlog holds
the records asked for, in the capture's proportions. The drop-path backlog,
`benchdrop_json.bench.products`, holds only the snapshot reads (JSON with schemas).

A backlog already in Kafka with the same plan is reused (Avro only while the registry still
knows its schema ids: the local registry keeps them in memory)."""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cdc.connect import apply_connector
from cdc.stack.endpoints import StackEndpoints
from cdc.tables.config import WatchedTables, parse_watched_tables
from cdc.testing import RecordReader
from cdc.testing.pipeline import remove_connector

ENCODINGS = ("json", "json-noschema", "avro")
TABLES = ("bench.customers", "bench.orders", "bench.products")
PARTITIONS = 4
SCHEMA = """
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
CREATE TABLE bench.customers (
    id bigserial PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL,
    country char(2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    active boolean NOT NULL DEFAULT true
);
CREATE TABLE bench.orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL,
    status text NOT NULL,
    total numeric(12, 2) NOT NULL,
    currency char(3) NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT now(),
    note text
);
CREATE TABLE bench.products (
    id bigserial PRIMARY KEY,
    sku text NOT NULL,
    title text NOT NULL,
    price numeric(10, 2) NOT NULL,
    stock integer NOT NULL,
    tags text[] NOT NULL,
    attrs jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO bench.products (sku, title, price, stock, tags, attrs)
SELECT 'SKU-' || lpad(i::text, 6, '0'), 'Product number ' || i || ' in the catalogue',
       (i % 500) + 0.99, i % 120, ARRAY['tag' || (i % 7), 'tag' || (i % 11)],
       jsonb_build_object('color', 'c' || (i % 9), 'size', i % 5, 'weight_g', i * 3)
FROM generate_series(1, 2000) AS i;
"""
# After the snapshot, one transaction each: new customers and orders, then rounds of payments,
# customers switched off and on, stock changes, paid orders deleted, and more new ones.
INSERTS = [
    "INSERT INTO bench.customers (email, name, country) SELECT 'user' || i || '@example.com', "
    "'Customer ' || i, (ARRAY['DE','FR','US','JP'])[1 + i % 4] FROM generate_series(1, 500) AS i",
    "INSERT INTO bench.orders (customer_id, status, total, currency, note) SELECT 1 + i % 500, "
    "'placed', (i % 300) * 1.25 + 0.5, 'EUR', CASE WHEN i % 3 = 0 THEN 'leave at the door' END "
    "FROM generate_series(1, 500) AS i",
]
ROUND = [
    "UPDATE bench.orders SET status = 'paid' WHERE status = 'placed' AND id % 2 = 0",
    "UPDATE bench.customers SET active = NOT active WHERE id % 4 = 0",
    "UPDATE bench.products SET stock = stock - 1 WHERE id % 24 = 0",
    "DELETE FROM bench.orders WHERE status = 'paid' AND id % 8 = 0",
    *INSERTS,
]
ROUNDS = 8
SNAPSHOT_ROWS = 2000
Record = tuple[str, bytes | None, bytes | None]  # (table, key, value)


@dataclass
class Backlog:
    """Pre-filled topics and what they hold."""

    encoding: str
    prefix: str  # topic prefix: `<prefix>.bench.<table>`
    records: int
    kinds: dict[str, int] = field(default_factory=dict)  # "bench.orders c": n, "tombstone": n
    schema_ids: list[int] = field(default_factory=list)

    @property
    def topics(self) -> list[str]:
        tables = ["bench.products"] if self.prefix.startswith("benchdrop") else TABLES
        return [f"{self.prefix}.{t}" for t in tables]

    def watched(self) -> WatchedTables:
        """The watched-tables file a consumer of this backlog runs with."""
        return watched_tables(self.prefix, self.encoding)


def watched_tables(prefix: str, encoding: str) -> WatchedTables:
    tables = "\n".join(f"  {t}: {{}}" for t in TABLES)
    return parse_watched_tables(
        f"connector:\n  name: {prefix}\n  topic_prefix: {prefix}\n  slot: {prefix}\n"
        f"  publication: {prefix}\n  encoding: {encoding}\n  heartbeat_interval_ms: 1000\n"
        f"tables:\n{tables}\n"
    )


def capture(stack: StackEndpoints) -> dict[str, list[Record]]:
    """Run the workload with a connector per encoding; every record each one wrote."""
    run = f"benchsrc{uuid.uuid4().hex[:6]}"
    settings = stack.settings()
    with psycopg.connect(
        settings.pg_conninfo(), password=stack.app_password, autocommit=True
    ) as conn:
        conn.execute(SCHEMA)
        sources = {e: watched_tables(f"{run}_{e.replace('-', '_')}", e) for e in ENCODINGS}
        try:
            for watched in sources.values():
                apply_connector(watched, settings)
            # The workload waits for every snapshot: rows written meanwhile would come as
            # snapshot reads to some connectors and as changes to others.
            snapshots = [f"{w.connector.topic_prefix}.bench.products" for w in sources.values()]
            deadline = time.monotonic() + 300
            while end_offsets(stack.kafka_bootstrap, snapshots) < SNAPSHOT_ROWS * len(sources):
                if time.monotonic() > deadline:
                    raise TimeoutError("the connectors' snapshots did not finish in 300 s")
                time.sleep(1)
            expected = SNAPSHOT_ROWS
            for statement in [*INSERTS, *ROUND * ROUNDS]:
                cur = conn.execute(statement)
                # A delete makes a tombstone too.
                expected += cur.rowcount * (2 if statement.startswith("DELETE") else 1)
            out = {}
            for encoding, watched in sources.items():
                topics = [f"{watched.connector.topic_prefix}.{t}" for t in TABLES]
                with RecordReader(stack.kafka_bootstrap, topics) as reader:
                    msgs = reader.wait(lambda r: len(r) >= expected, 300)
                # Per table in Kafka order: a delete's tombstone right after it.
                msgs.sort(key=lambda m: (m.topic(), m.partition(), m.offset()))
                out[encoding] = [
                    (str(m.topic()).split(".", 1)[1], m.key(), m.value()) for m in msgs
                ]
        finally:
            for watched in sources.values():
                remove_connector(stack, watched.connector)
            _delete_topics(stack.kafka_bootstrap, lambda t: t.startswith(run))
    return out


def kinds(records: Iterable[Record]) -> collections.Counter[str]:
    """How many records of each table and op, and tombstones (JSON records)."""
    counts: collections.Counter[str] = collections.Counter()
    for table, _key, value in records:
        if value is None:
            counts["tombstone"] += 1
        else:
            body = json.loads(value)
            counts[f"{table} {body.get('payload', body)['op']}"] += 1
    return counts


def plan(sample: list[Record], total: int) -> Iterator[Record]:
    """``total`` records: each table's captured records cycled, tables in the capture's
    proportions, interleaved."""
    by_table: dict[str, list[Record]] = {}
    for record in sample:
        by_table.setdefault(record[0], []).append(record)
    quotas = {t: total * len(rs) // len(sample) for t, rs in by_table.items()}
    quotas[max(quotas, key=quotas.__getitem__)] += total - sum(quotas.values())
    positions = dict.fromkeys(by_table, 0)
    while positions:
        for table in list(positions):
            i = positions[table]
            if i >= quotas[table]:
                del positions[table]
                continue
            records = by_table[table]
            yield records[i % len(records)]
            positions[table] = i + 1


def fill(bootstrap: str, prefix: str, records: Iterable[Record]) -> None:
    """Produce into fresh topics ``<prefix>.<table>``, key for key as captured."""
    _delete_topics(bootstrap, lambda t: t.startswith(f"{prefix}."))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(f"{prefix}.{t}", PARTITIONS, 1) for t in TABLES]
    for future in admin.create_topics(new).values():
        future.result()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.kbytes": 262_144,
        }
    )
    for table, key, value in records:
        while True:
            try:
                producer.produce(f"{prefix}.{table}", value, key)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError(f"{prefix}: records left unsent")


def end_offsets(bootstrap: str, topics: list[str]) -> int:
    """How many records the topics hold (0 if one is missing)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-offsets"})
    try:
        known = consumer.list_topics(timeout=10).topics
        total = 0
        for topic in topics:
            if topic not in known:
                return 0
            for p in known[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                total += high - low
        return total
    finally:
        consumer.close()


def _delete_topics(bootstrap: str, which: Any) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    doomed = [t for t in admin.list_topics(timeout=10).topics if which(t)]
    if not doomed:
        return
    for future in admin.delete_topics(doomed).values():
        future.result()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not set(doomed) & set(admin.list_topics(timeout=10).topics):
            return
        time.sleep(0.5)


def _schema_ids(records: list[Record]) -> list[int]:
    return sorted(
        {
            int.from_bytes(raw[1:5], "big")
            for _t, key, value in records
            for raw in (key, value)
            if raw and raw[0] == 0
        }
    )


def _registry_knows(registry: str, ids: list[int]) -> bool:
    for i in ids:
        r = httpx.get(f"{registry}/apis/ccompat/v7/schemas/ids/{i}", timeout=10)
        if r.status_code != 200:
            return False
    return True


def prepare(stack: StackEndpoints, records: int, state: Path) -> dict[str, Backlog]:
    """The backlogs for every encoding and the drop path: reused when Kafka (and for Avro,
    the registry) still holds what ``state`` says was filled, otherwise captured and filled."""
    state.mkdir(parents=True, exist_ok=True)
    marker = state / "backlog.json"
    wanted = {e: f"bench_{e.replace('-', '_')}" for e in ENCODINGS} | {"drop": "benchdrop_json"}
    if marker.exists():
        saved = {k: Backlog(**v) for k, v in json.loads(marker.read_text()).items()}
        if set(saved) == set(wanted) and all(
            b.records == records
            and end_offsets(stack.kafka_bootstrap, b.topics) == records
            and _registry_knows(stack.registry_url, b.schema_ids)
            for b in saved.values()
        ):
            return saved
    started = time.monotonic()
    sample = capture(stack)
    took = time.monotonic() - started
    print(f"captured {len(sample['json'])} records per encoding in {took:.0f} s", flush=True)
    backlogs: dict[str, Backlog] = {}
    for name, prefix in wanted.items():
        encoding = "json" if name == "drop" else name
        chosen = sample[encoding]
        if name == "drop":
            chosen = [r for r in chosen if r[2] is not None and b'"op":"r"' in r[2]]
        started = time.monotonic()
        fill(stack.kafka_bootstrap, prefix, plan(chosen, records))
        filled = end_offsets(stack.kafka_bootstrap, [f"{prefix}.{t}" for t in TABLES])
        if filled != records:
            raise RuntimeError(f"{prefix}: {filled} records in Kafka, {records} produced")
        # Avro's op is inside the binary body; the JSON capture is the same workload.
        counted = kinds(sample["json"] if name == "avro" else chosen)
        backlogs[name] = Backlog(
            encoding,
            prefix,
            records,
            kinds={k: v * records // len(chosen) for k, v in sorted(counted.items())},
            schema_ids=_schema_ids(chosen),
        )
        took = time.monotonic() - started
        print(f"filled {prefix}: {records} records in {took:.0f} s", flush=True)
    marker.write_text(json.dumps({k: asdict(b) for k, b in backlogs.items()}, indent=1))
    return backlogs
