"""Latency under live load: PostgreSQL commit -> handler call at several write rates, p50, p99
and p99.9, split into Debezium's share (commit -> the Kafka record's timestamp, as Connect's
producer stamps it) and ours (that timestamp -> the handler's first line).

    python -m bench.latency                  # 100, 500, 1000, 2000, 5000/s and half our maximum
    python -m bench.latency --rates 200,2000 --seconds 20

A writer process inserts rows into `benchlat.pings`, one transaction per 10 ms tick (or per
row below 100/s), for ``--seconds`` per rate; the connector streams them as JSON with schemas;
our runtime runs in this process with one handler that notes the time. The commit time is the
change's `source.ts_us`. "Half our maximum" is half the JSON records/s of the last
`bench.throughput` run (`.cdc/bench/throughput.json`). Prints the results and writes them to
`.cdc/bench/latency.json`."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from cdc import Change, Context, on_change
from cdc.connect import apply_connector
from cdc.logs import configure_logging
from cdc.routing import Router, handlers_of
from cdc.runtime import Runtime
from cdc.tables.config import parse_watched_tables
from cdc.testing.pipeline import remove_connector
from cdc.testing.stack import running_stack

STATE = Path(__file__).resolve().parent.parent / ".cdc" / "bench"
SCHEMA = """
CREATE SCHEMA IF NOT EXISTS benchlat;
CREATE TABLE IF NOT EXISTS benchlat.pings (
    id bigserial PRIMARY KEY,
    note text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
"""
# (commit µs, Kafka record ms, handler s) per change
samples: list[tuple[int, int, float]] = []


@on_change("benchlat.pings")
def ping(change: Change, ctx: Context) -> None:
    now = time.time()
    commit = change.source.ts_us or change.source.ts_ms * 1000
    samples.append((commit, change.kafka.timestamp_ms or 0, now))


def write(conninfo: str, password: str, rate: float, seconds: float, done: Any) -> None:
    """Insert ``rate`` rows a second for ``seconds``, a transaction per tick."""
    tick = max(0.01, 1 / rate)
    with psycopg.connect(conninfo, password=password, autocommit=True) as conn:
        start = time.monotonic()
        written = 0
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(rate * (elapsed + tick)) - written
            if due > 0:
                conn.execute(
                    "INSERT INTO benchlat.pings (note) SELECT 'ping ' || g "
                    "FROM generate_series(1, %s) g",
                    (due,),
                )
                written += due
            time.sleep(max(0.0, start + (written / rate) - time.monotonic()))
        done.value = written


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 1)

    return {"p50": at(0.5), "p99": at(0.99), "p99_9": at(0.999), "max": round(values[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="", help="rows/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    configure_logging("WARNING", "json")
    rates = [float(r) for r in args.rates.split(",") if r] or default_rates()
    run = f"benchlat{uuid.uuid4().hex[:6]}"
    watched = parse_watched_tables(
        f"connector:\n  name: {run}\n  topic_prefix: {run}\n  slot: {run}\n"
        f"  publication: {run}\ntables:\n  benchlat.pings: {{}}\n"
    )
    results: dict[str, Any] = {"seconds_per_rate": args.seconds, "rates": {}}
    with running_stack() as running:
        stack = running.endpoints
        settings = stack.settings(group_id=run, http_port=None)
        password = stack.app_password
        with psycopg.connect(settings.pg_conninfo(), password=password, autocommit=True) as c:
            c.execute(SCHEMA)
        apply_connector(watched, settings)
        runtime = Runtime(settings, watched, Router(handlers_of(ping), watched.tables))
        consumer = threading.Thread(target=runtime.run, name="runtime")
        consumer.start()
        try:
            for rate in [50.0, *rates]:  # the first: warm-up, not reported
                samples.clear()
                done = multiprocessing.Value("q", 0)
                writer = multiprocessing.Process(
                    target=write,
                    args=(settings.pg_conninfo(), password, rate, args.seconds, done),
                )
                writer.start()
                writer.join()
                deadline = time.monotonic() + 120
                while len(samples) < done.value and time.monotonic() < deadline:
                    time.sleep(0.2)
                if rate == 50.0 and rate not in rates:
                    continue
                got = list(samples)
                debezium = [k - c / 1000 for c, k, _h in got]
                ours = [h * 1000 - k for _c, k, h in got]
                total = [h * 1000 - c / 1000 for c, _k, h in got]
                results["rates"][f"{rate:.0f}"] = {
                    "written": done.value,
                    "handled": len(got),
                    "debezium_ms": percentiles(debezium),
                    "ours_ms": percentiles(ours),
                    "total_ms": percentiles(total),
                }
                print(f"{rate:>6.0f}/s {json.dumps(results['rates'][f'{rate:.0f}'])}", flush=True)
        finally:
            runtime.stop()
            consumer.join(60)
            remove_connector(stack, watched.connector)
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "latency.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


def default_rates() -> list[float]:
    rates = [100.0, 500.0, 1000.0, 2000.0, 5000.0]
    measured = STATE / "throughput.json"
    if measured.exists():
        top = json.loads(measured.read_text())["measures"]["ours/json"]["records_per_s"]
        rates.append(float(round(top / 2, -2)))
    return sorted(set(rates))


if __name__ == "__main__":
    main()
