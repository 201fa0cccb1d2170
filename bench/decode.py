"""Decoding throughput per encoding on the captured corpus, next to what the bytes cost
to parse at all: stdlib `json.loads` for JSON, a bare fastavro read for Avro.

    python -m bench.decode                 # 200k records per measure
    python -m bench.decode --records 50000

Each measure decodes the corpus records (data changes, snapshot reads, tombstone, heartbeats,
transaction boundaries, a message) round-robin, keys and values, in one process. Prints one
JSON object; the README's benchmark section records a run."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import fastavro

from tests.corpus.load import DATA, ENCODINGS, Record, avro_schemas, decode, decoder, records


def rate(work: Callable[[Record], Any], sample: list[Record], count: int) -> float:
    """Records per second of CPU time over `count` records, best of three runs. (CPU time,
    every thread's: other jobs on the machine take wall time, not ours.)"""
    best = float("inf")
    for _ in range(3):
        batch = list(itertools.islice(itertools.cycle(sample), count))
        start = time.process_time()
        for record in batch:
            work(record)
        best = min(best, time.process_time() - start)
    return count / best


def json_loads(record: Record) -> None:
    for raw in (record.key, record.value):
        if raw is not None:
            json.loads(raw)


def avro_reader() -> Callable[[Record], None]:
    parsed = {int(k): fastavro.parse_schema(json.loads(v)) for k, v in avro_schemas().items()}

    def read(record: Record) -> None:
        for raw in (record.key, record.value):
            if raw is not None:
                buffer = io.BytesIO(raw)
                buffer.seek(5)
                fastavro.schemaless_reader(buffer, parsed[int.from_bytes(raw[1:5], "big")], None)

    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    count = parser.parse_args().records
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "records_per_measure": count,
    }
    for encoding in ENCODINGS:
        corpus = list(records(encoding))
        dec = decoder(encoding)
        baseline_name, baseline = (
            ("fastavro_read", avro_reader()) if encoding == "avro" else ("json_loads", json_loads)
        )
        for subset, sample in (
            ("all", corpus),
            ("data_topic", [r for r in corpus if r.kafka.topic == DATA]),
        ):
            ours = rate(lambda r, d=dec: decode(d, r), sample, count)
            base = rate(baseline, sample, count)
            results[f"{encoding}/{subset}"] = {
                "decode_per_s": round(ours),
                f"{baseline_name}_per_s": round(base),
                "ratio": round(ours / base, 2),
                "mean_value_bytes": round(sum(len(r.value or b"") for r in sample) / len(sample)),
            }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
