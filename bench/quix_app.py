"""A quixstreams application doing what our consumer does in the throughput benchmark, written
the way a team would with quixstreams' Streaming DataFrame API: JSON values through quixstreams'
own deserializer, tombstones, heartbeats and snapshot reads filtered out, the rest routed by
`source.table` to one no-op handler per table (`customers`, `orders`, `products`; anything else
is counted as `unknown`). Stateless, at-least-once, offsets committed every second.

quixstreams pins confluent-kafka and pydantic below what our venv has, so it runs in a venv of
its own, `.cdc/bench/quix-venv`, which `ensure_venv()` creates (stdlib only: the orchestrator
imports this module from our venv; quixstreams is imported inside `main()`):

    .cdc/bench/quix-venv/bin/python bench/quix_app.py --bootstrap HOST:PORT \\
        --topics t1,t2,t3 --records N --group G [--schemas | --no-schemas]

It reads the topics from the earliest offset as consumer group G (use a fresh one per run),
counts every record consumed (tombstones and filtered records included), stops once N have
been consumed, and prints one JSON line to stdout: records, seconds and cpu_seconds from the
first record consumed to the last one processed, records per handler, and records dropped.
Without `--schemas`/`--no-schemas` a value with `schema` and `payload` keys is unwrapped. Logs
go to stderr."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REQUIREMENT = "quixstreams==3.28.1"
VENV = Path(".cdc/bench/quix-venv")
TABLES = ("customers", "orders", "products")


def ensure_venv(root: Path) -> Path:
    """Create `root/.cdc/bench/quix-venv` with quixstreams unless it is there; its python."""
    venv = root / VENV
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if python.exists() and marker.exists() and marker.read_text().strip() == REQUIREMENT:
        return python
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for command in ([sys.executable, "-m", "venv", str(venv)], [*pip, REQUIREMENT]):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    marker.write_text(REQUIREMENT + "\n")
    return python


def customers(change: dict[str, Any]) -> None:
    """No-op handler for the customers table."""


def orders(change: dict[str, Any]) -> None:
    """No-op handler for the orders table."""


def products(change: dict[str, Any]) -> None:
    """No-op handler for the products table."""


HANDLERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "customers": customers,
    "orders": orders,
    "products": products,
}


class Meter:
    """Counts records and routes changes; stops the application after `target` records."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.consumed = 0
        self.routed = dict.fromkeys((*TABLES, "unknown"), 0)
        self.wall = [0.0, 0.0]
        self.cpu = [0.0, 0.0]
        self.stop: Callable[[], None] = lambda: None

    def count(self, value: Any) -> None:
        """First step of every dataframe: sees every record, tombstones included."""
        if not self.consumed:
            self.wall[0], self.cpu[0] = time.perf_counter(), time.process_time()
        self.consumed += 1

    def route(self, change: dict[str, Any]) -> None:
        """Hand a change to its table's handler."""
        table = change["source"]["table"]
        handler = HANDLERS.get(table)
        if handler is None:
            self.routed["unknown"] += 1
        else:
            self.routed[table] += 1
            handler(change)

    def processed(self, topic: str, partition: int, offset: int) -> None:
        """After each record's whole pipeline ran (filtered or not): stop at the target."""
        if self.consumed >= self.target and not self.wall[1]:
            self.wall[1], self.cpu[1] = time.perf_counter(), time.process_time()
            self.stop()

    def result(self) -> dict[str, Any]:
        """The JSON line the benchmark reads."""
        return {
            "records": self.consumed,
            "seconds": self.wall[1] - self.wall[0],
            "cpu_seconds": self.cpu[1] - self.cpu[0],
            "peak_rss_mb": peak_rss_mb(),
            "routed": self.routed,
            "dropped": self.consumed - sum(self.routed.values()),
        }


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def unwrap(value: dict[str, Any]) -> dict[str, Any]:
    """The Debezium envelope, from a value with or without the schema around it."""
    return value["payload"] if "payload" in value and "schema" in value else value


def is_data_change(change: dict[str, Any]) -> bool:
    """A change to hand over: not a heartbeat (no op) nor a snapshot read."""
    op = change.get("op")
    return op is not None and op != "r"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT")
    parser.add_argument("--topics", required=True, help="comma-separated topic names")
    parser.add_argument("--records", type=int, required=True, help="stop after N records")
    parser.add_argument("--group", required=True, help="consumer group (fresh per run)")
    parser.add_argument(
        "--schemas",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="values are JSON with (or without) schemas; default: detect per record",
    )
    args = parser.parse_args(argv)
    if args.records < 1:
        parser.error("--records must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from quixstreams import Application  # type: ignore[import-not-found, unused-ignore]

    meter = Meter(args.records)
    payload: Callable[[dict[str, Any]], dict[str, Any]] | None = {
        True: lambda value: value["payload"],
        False: None,
        None: unwrap,
    }[args.schemas]
    with tempfile.TemporaryDirectory(prefix="quix-bench-state-") as state_dir:
        app = Application(
            broker_address=args.bootstrap,
            consumer_group=args.group,
            auto_offset_reset="earliest",
            commit_interval=1.0,
            state_dir=state_dir,  # never used (no stateful steps), but kept out of the repo
            use_changelog_topics=False,
            auto_create_topics=False,  # the topics exist; a missing one is an error
            on_message_processed=meter.processed,
            loglevel="WARNING",
        )
        meter.stop = app.stop
        for name in args.topics.split(","):
            sdf = app.dataframe(app.topic(name, value_deserializer="json"))
            sdf = sdf.update(meter.count)
            sdf = sdf.filter(lambda value: value is not None)  # tombstones
            if payload is not None:
                sdf = sdf.apply(payload)
            sdf = sdf.filter(is_data_change)
            sdf = sdf.update(meter.route)
        app.run()
    if meter.consumed < args.records:
        sys.exit(f"stopped after {meter.consumed} of {args.records} records")
    print(json.dumps(meter.result()), flush=True)


if __name__ == "__main__":
    main()
