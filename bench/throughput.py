"""Throughput on a pre-filled backlog, every contender in the same run on the same topics:
the raw consume() limit, the hand-written baseline, a quixstreams application and our runtime
in each encoding; the drop path (snapshot reads nobody asked for); one and two consumer
processes of ours on the same 4-partition topics; a PostgreSQL sink written change by change
and by a batch handler, on the first 200,000 records of the JSON backlog.

    python -m bench.throughput                    # 1M records per backlog
    python -m bench.throughput --records 200000

Each contender is a process of its own (`bench.contenders`, `bench/quix_app.py`), reading the
backlog from the start in a new consumer group. Records/s and CPU seconds per million are
taken from its first record to its last; peak memory is the process's maximum resident set.
Prints the results and writes them to `.cdc/bench/throughput.json`."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import confluent_kafka
import fastavro
from confluent_kafka import Consumer, TopicPartition

from bench import quix_app
from bench.backlog import Backlog, prepare
from cdc.stack.endpoints import StackEndpoints
from cdc.testing.stack import running_stack

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".cdc" / "bench"
SINK_RECORDS = 200_000  # a sink written change by change takes minutes over 1M


@dataclass
class Measure:
    name: str
    records: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    detail: dict[str, Any]

    @property
    def per_s(self) -> float:
        return self.records / self.seconds

    def row(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "records_per_s": round(self.per_s),
            "cpu_s_per_million": round(self.cpu_seconds / self.records * 1e6, 1),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "seconds": round(self.seconds, 2),
            **self.detail,
        }


class Bench:
    def __init__(self, stack: StackEndpoints, backlogs: dict[str, Backlog]) -> None:
        self.stack = stack
        self.backlogs = backlogs
        self.quix_python = quix_app.ensure_venv(ROOT)

    def env(self, group: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.stack.env(),
            "CDC_GROUP_ID": group,
            "PYTHONPATH": str(ROOT),
        }

    def contender(
        self, name: str, backlog: str, processes: int = 1, records: int | None = None
    ) -> Measure:
        """Run ``processes`` processes of a contender in one group until the group has taken
        the whole backlog (``records``: its first so many)."""
        b = self.backlogs[backlog]
        wanted = records or b.records
        group = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        if name == "quix":
            schemas = "--no-schemas" if b.encoding == "json-noschema" else "--schemas"
            cmd = [
                str(self.quix_python),
                str(ROOT / "bench" / "quix_app.py"),
                "--bootstrap",
                self.stack.kafka_bootstrap,
                "--topics",
                ",".join(b.topics),
                "--records",
                str(b.records),
                "--group",
                group,
                schemas,
            ]
        else:
            taking = str(wanted if processes == 1 else 0)
            cmd = [sys.executable, "-m", "bench.contenders", name, "--prefix", b.prefix]
            cmd += ["--encoding", b.encoding, "--records", taking]
        log = (STATE / "logs" / f"{name}-{backlog}-{processes}.log").open("w")
        procs = [
            subprocess.Popen(
                cmd, cwd=ROOT, env=self.env(group), stdout=subprocess.PIPE, stderr=log, text=True
            )
            for _ in range(processes)
        ]
        if processes > 1:
            self._until_committed(group, b)
            for p in procs:
                p.send_signal(signal.SIGTERM)
        reports = []
        for p in procs:
            out, _ = p.communicate(timeout=3600)
            if p.returncode != 0 or not out.strip():
                raise RuntimeError(f"{name} on {backlog} failed (exit {p.returncode}): {log.name}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        cpu = sum(r["cpu_seconds"] for r in reports)
        rss = max(r["peak_rss_mb"] for r in reports)
        taken = sum(r["records"] for r in reports)
        if taken < wanted:
            raise RuntimeError(f"{name} took {taken} of {wanted} records")
        seconds = (
            reports[0]["seconds"]
            if processes == 1
            else max(r["last"] for r in reports) - min(r["first"] for r in reports)
        )
        routed: Counter[str] = sum((Counter(r.get("routed", {})) for r in reports), Counter())
        detail: dict[str, Any] = {"routed": dict(routed)}
        if name == "ours" and self._committed(group, b) != b.records:
            # As in production: what was handled is committed, or the run does not count.
            raise RuntimeError(f"{name} on {backlog}: the group did not commit the backlog")
        if processes > 1:
            detail["per_process"] = [r["records"] for r in reports]
        return Measure(name, wanted, seconds, cpu, rss, detail)

    def _committed(self, group: str, b: Backlog) -> int:
        """How many of the backlog's records the group has committed."""
        consumer = Consumer({"bootstrap.servers": self.stack.kafka_bootstrap, "group.id": group})
        try:
            meta = consumer.list_topics(timeout=10).topics
            tps = [TopicPartition(t, p) for t in b.topics for p in meta[t].partitions]
            done = 0
            for tp in consumer.committed(tps, timeout=10):
                low, _high = consumer.get_watermark_offsets(tp, timeout=10)
                done += max(0, tp.offset - low)
            return done
        finally:
            consumer.close()

    def _until_committed(self, group: str, b: Backlog, timeout: float = 3600) -> None:
        deadline = time.monotonic() + timeout
        while self._committed(group, b) < b.records:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{group} did not commit the backlog in {timeout} s")
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    with running_stack() as running:
        stack = running.endpoints
        backlogs = prepare(stack, args.records, STATE)
        bench = Bench(stack, backlogs)
        m: dict[str, Measure] = {}
        plan = [
            ("raw", "json"),
            ("baseline", "json"),
            ("quix", "json"),
            ("ours", "json"),
            ("raw", "json-noschema"),
            ("baseline", "json-noschema"),
            ("quix", "json-noschema"),
            ("ours", "json-noschema"),
            ("raw", "avro"),
            ("ours", "avro"),
            ("raw", "drop"),
            ("ours", "drop"),
        ]
        for name, backlog in plan:
            m[f"{name}/{backlog}"] = result = bench.contender(name, backlog)
            print(f"{name:>8} {backlog:<14} {json.dumps(result.row())}", flush=True)
        m["ours/json x2"] = two = bench.contender("ours", "json", processes=2)
        print(f"{'ours':>8} {'json x2':<14} {json.dumps(two.row())}", flush=True)
        sunk = min(SINK_RECORDS, args.records)
        for name in ("sink", "sink_batch"):
            m[f"{name}/json"] = result = bench.contender(name, "json", records=sunk)
            print(f"{name:>8} {'json':<14} {json.dumps(result.row())}", flush=True)

    def ratio(a: str, b: str) -> float:
        return round(m[a].per_s / m[b].per_s, 2)

    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "versions": {
            "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0],
            "fastavro": fastavro.__version__,
        },
        "records_per_backlog": args.records,
        "mix": backlogs["json"].kinds,
        "measures": {k: v.row() for k, v in m.items()},
        "ratios": {
            "json_to_raw": ratio("ours/json", "raw/json"),
            "drop_path_to_raw": ratio("ours/drop", "raw/drop"),
            "json_to_quix": ratio("ours/json", "quix/json"),
            "json_to_baseline": ratio("ours/json", "baseline/json"),
            "noschema_to_quix": ratio("ours/json-noschema", "quix/json-noschema"),
            "noschema_to_baseline": ratio("ours/json-noschema", "baseline/json-noschema"),
            "avro_to_json": ratio("ours/avro", "ours/json"),
            "two_processes_to_one": ratio("ours/json x2", "ours/json"),
            "batch_sink_to_per_change_sink": ratio("sink_batch/json", "sink/json"),
        },
    }
    (STATE / "throughput.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
