"""The benchmarks that need no stack still run and report what the README's tables are made
of (a few hundred records each: a smoke run, not a measure)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(module: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", module, "--records", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_bench_decode_reports_every_encoding() -> None:
    report = run("bench.decode")
    for encoding in ("json", "json-noschema", "avro"):
        for records in ("all", "data_topic"):
            measure = report[f"{encoding}/{records}"]
            assert isinstance(measure, dict)
            assert measure["decode_per_s"] > 0
            assert measure["ratio"] > 0


def test_bench_dispatch_reports_each_pipeline() -> None:
    report = run("bench.dispatch")
    decode_only = report["decode_only_per_s"]
    assert isinstance(decode_only, int)
    assert decode_only > 0
    for name in ("noop", "noop_model", "async_noop", "event_noop_model"):
        for level in ("logged", "quiet"):
            measure = report[f"{name}/{level}"]
            assert isinstance(measure, dict)
            assert measure["per_s"] > 0


def test_bench_replay_runs_the_runtime_to_the_last_offset() -> None:
    report = run("bench.replay")
    assert isinstance(report["cpu_us_per_record"], float)
    routed = report["routed (1000)"]
    assert isinstance(routed, dict)
    assert sum(routed.values()) == 1000
