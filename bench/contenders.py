"""The contenders of the throughput benchmark, each run as a process of its own on a backlog:

- ``raw``: confluent-kafka's ``consume()`` in batches, nothing done with the bytes (the limit);
- ``baseline``: what teams write by hand: ``poll()``, ``json.loads``, skip tombstones,
  heartbeats and snapshot reads, ``match`` on the table, offsets auto-committed;
- ``ours``: the runtime with a no-op handler per table, as ``cdc run`` runs it;
- ``sink`` and ``sink_batch``: the runtime writing every change into a PostgreSQL table (an
  upsert keyed by table and row), one statement per change or one ``executemany`` per list
  of up to 500 changes (a batch handler).

    python -m bench.contenders ours --prefix bench_json --encoding json --records 1000000

Kafka and the registry come from the ``CDC_*`` settings. Each reads the backlog from the
start in a new consumer group, stops once it has taken ``--records`` records (``0``: until
SIGTERM), and prints one JSON line: records, seconds and CPU seconds from its first record
to its last, and what it routed where. The quixstreams contender is `bench/quix_app.py`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, Message

from cdc import Change, Context, on_change
from cdc.logs import configure_logging
from cdc.routing import Handler, Router, handlers_of
from cdc.runtime import Runtime
from cdc.settings import Settings

TABLES = ("customers", "orders", "products")


class Clock:
    """Wall and CPU time (every thread of the process) from the first record to the one that
    reaches ``target``. Read twice, not per record: reading the process's CPU time costs
    microseconds, as much as some contenders spend on a record (quixstreams' meter does the
    same)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.records = 0
        self.first: tuple[float, float] | None = None
        self.last: tuple[float, float] | None = None

    def tick(self, n: int = 1) -> None:
        self.passed(self.records + n)

    def passed(self, count: int) -> None:
        """``count`` records are done so far."""
        if self.last is not None:
            return
        if self.first is None:
            self.first = (time.time(), time.process_time())
        self.records = count
        if count >= self.target:
            self.last = (time.time(), time.process_time())

    def report(self, **extra: Any) -> dict[str, Any]:
        now = (time.time(), time.process_time())
        first, last = self.first or now, self.last or now  # stopped early: up to now
        return {
            "records": self.records,
            "first": first[0],
            "last": last[0],
            "seconds": last[0] - first[0],
            "cpu_seconds": last[1] - first[1],
            "peak_rss_mb": peak_rss_mb(),
            **extra,
        }


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _consumer(settings: Settings, **extra: Any) -> Consumer:
    return Consumer(
        settings.kafka_config(
            **{"group.id": settings.group_id, "auto.offset.reset": "earliest", **extra}
        )
    )


def raw(settings: Settings, topics: list[str], records: int, stop: threading.Event) -> Clock:
    # librdkafka's fetch settings as our runtime sets them: with the default backoff (1 s
    # once the prefetch queue is full) the loop would wait on the client, not on Kafka.
    consumer = _consumer(
        settings, **{"queued.max.messages.kbytes": 16384, "fetch.queue.backoff.ms": 50}
    )
    consumer.subscribe(topics)
    clock = Clock(records)
    try:
        while clock.records < records and not stop.is_set():
            batch = consumer.consume(500, 0.5)
            taken = sum(1 for m in batch if m.error() is None)
            if taken:
                clock.tick(taken)
    finally:
        consumer.close()
    return clock


def baseline(
    settings: Settings, topics: list[str], records: int, stop: threading.Event
) -> tuple[Clock, Counter[str]]:
    consumer = _consumer(settings)
    consumer.subscribe(topics)
    clock = Clock(records)
    routed: Counter[str] = Counter()

    def customers(row: dict[str, Any], op: str) -> None:
        routed["customers"] += 1

    def orders(row: dict[str, Any], op: str) -> None:
        routed["orders"] += 1

    def products(row: dict[str, Any], op: str) -> None:
        routed["products"] += 1

    try:
        while clock.records < records and not stop.is_set():
            msg: Message | None = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            clock.tick()
            raw_value = msg.value()
            if raw_value is None:
                continue  # tombstone
            event = json.loads(raw_value)
            event = event.get("payload", event)  # JSON with schemas wraps it
            op = event.get("op")
            if op is None or op == "r":
                continue  # heartbeat, snapshot read
            row = event["before"] if op == "d" else event["after"]
            match event["source"]["table"]:
                case "customers":
                    customers(row, op)
                case "orders":
                    orders(row, op)
                case "products":
                    products(row, op)
                case other:
                    routed[f"unknown {other}"] += 1
    finally:
        consumer.close()
    return clock, routed


def ours(
    settings: Settings,
    prefix: str,
    encoding: str,
    records: int,
    stop: threading.Event,
    sink: str = "",
) -> tuple[Clock, Counter[str]]:
    from bench.backlog import watched_tables

    watched = watched_tables(prefix, encoding)
    if sink:
        handlers = sink_handlers(settings, batch=sink == "sink_batch")
    else:
        handlers = [h for f in (customers, orders, products) for h in handlers_of(f)]
    clock = Clock(records)
    # No observer, as `cdc run` has none: the records finished are read from the runtime's
    # own count (added to once per fetch) every 10 ms.
    runtime = Runtime(settings, watched, Router(handlers, watched.tables))

    def watch() -> None:
        while not stop.wait(0.01):
            done = sum(runtime.metrics.record_totals().values())
            if done:
                clock.passed(done)
            if done >= records:
                runtime.stop()
                return
        runtime.stop()

    threading.Thread(target=watch, daemon=True).start()
    runtime.run()
    routed: Counter[str] = Counter(runtime.metrics.record_totals())
    if clock.last is None:  # stopped early
        clock.records = sum(routed.values())
    return clock, routed


@on_change("bench.customers")
def customers(change: Change, ctx: Context) -> None:
    pass


@on_change("bench.orders")
def orders(change: Change, ctx: Context) -> None:
    pass


@on_change("bench.products")
def products(change: Change, ctx: Context) -> None:
    pass


SINK = "bench_sink"
UPSERT = (
    f"INSERT INTO {SINK} (tbl, id, op) VALUES (%s, %s, %s) "
    f"ON CONFLICT (tbl, id) DO UPDATE SET op = excluded.op, n = {SINK}.n + 1"
)


def sink_handlers(settings: Settings, *, batch: bool) -> list[Handler]:
    """Handlers of the three tables writing each change into an emptied sink table."""
    with psycopg.connect(
        settings.pg_conninfo(), password=settings.pg_password.get_secret_value(), autocommit=True
    ) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SINK} (tbl text, id text, op text, "
            "n int NOT NULL DEFAULT 1, PRIMARY KEY (tbl, id))"
        )
        conn.execute(f"TRUNCATE {SINK}")

    def row(change: Change) -> tuple[str, str, str]:
        return change.table, json.dumps(change.key), change.op.value

    def each(change: Change, ctx: Context) -> None:
        with ctx.connection() as conn:
            conn.execute(UPSERT, row(change))

    def many(changes: list[Change], ctx: Context) -> None:
        with ctx.connection() as conn, conn.cursor() as cur:
            cur.executemany(UPSERT, [row(c) for c in changes])

    func = many if batch else each
    for table in TABLES:
        func = on_change(f"bench.{table}", batch=500 if batch else None)(func)
    return list(handlers_of(func))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("contender", choices=("raw", "baseline", "ours", "sink", "sink_batch"))
    parser.add_argument("--prefix", required=True, help="the backlog's topic prefix")
    parser.add_argument("--encoding", default="json")
    parser.add_argument("--records", type=int, default=0, help="stop after these; 0: SIGTERM")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    configure_logging(args.log_level, "json")
    settings = Settings(http_port=None)
    records = args.records or sys.maxsize
    topics = [f"{args.prefix}.bench.{t}" for t in TABLES]
    routed: Counter[str] = Counter()
    if args.contender == "raw":
        clock = raw(settings, topics, records, stop)
    elif args.contender == "baseline":
        clock, routed = baseline(settings, topics, records, stop)
    else:
        sink = "" if args.contender == "ours" else args.contender
        clock, routed = ours(settings, args.prefix, args.encoding, records, stop, sink)
    print(json.dumps(clock.report(routed=dict(routed))), flush=True)


if __name__ == "__main__":
    main()
