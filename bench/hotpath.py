"""Our runtime's per-record CPU cost with Kafka taken out of the loop: a sample of a backlog's
records is read from Kafka once, then replayed through `Runtime.run()` (fetch, decode, route,
the no-op handlers of `bench.contenders`, offsets stored, flow control) by a consumer that
hands out the sample again and again from memory.

    python -m bench.hotpath --prefix bench_json --encoding json --records 300000
    py-spy record -o profile.txt -f raw -r 200 --gil --threads -- \\
        python -m bench.hotpath --prefix bench_json --records 300000

The headline figures come from `bench.throughput`, against Kafka; this one is for profiling
and for comparing changes to the runtime quickly. Prints one JSON line."""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from bench.contenders import TABLES, customers, orders, peak_rss_mb, products
from cdc.logs import configure_logging
from cdc.routing import Router, handlers_of
from cdc.runtime import Runtime
from cdc.runtime.consumer import Handled
from cdc.settings import Settings


def sample(settings: Settings, topics: list[str], n: int) -> list[Message]:
    """The first ``n`` records of the topics, as Kafka hands them out."""
    consumer = Consumer(
        settings.kafka_config(
            **{"group.id": f"hotpath-{time.time_ns()}", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe(topics)
    taken: list[Message] = []
    try:
        deadline = time.monotonic() + 120
        while len(taken) < n and time.monotonic() < deadline:
            taken.extend(m for m in consumer.consume(500, 1.0) if m.error() is None)
    finally:
        consumer.close()
    if len(taken) < n:
        raise SystemExit(f"only {len(taken)} of {n} records in {topics}")
    return taken[:n]


class Replay:
    """What `Runtime.run()` asks of a consumer, replaying ``records`` with ever-growing
    offsets until ``total`` are out."""

    def __init__(self, records: list[Message], total: int) -> None:
        self._records = records
        self._total = total
        self._next = itertools.count()
        self._offsets: dict[tuple[str, int], int] = {}
        self.stored = 0

    def subscribe(self, topics: list[str], on_assign: Callable[..., None], **_: Any) -> None:
        parts = sorted({(str(m.topic()), int(m.partition() or 0)) for m in self._records})
        on_assign(self, [TopicPartition(t, p) for t, p in parts])

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        out = []
        for _ in range(num_messages):
            i = next(self._next)
            if i >= self._total:
                time.sleep(min(timeout, 0.01))
                break
            m = self._records[i % len(self._records)]
            where = (str(m.topic()), int(m.partition() or 0))
            offset = self._offsets[where] = self._offsets.get(where, -1) + 1
            out.append(
                Message(
                    topic=where[0],
                    partition=where[1],
                    offset=offset,
                    key=m.key(),
                    value=m.value(),
                    headers=m.headers(),
                    timestamp=m.timestamp(),
                )
            )
        return out

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.stored += len(offsets)

    def pause(self, partitions: list[TopicPartition]) -> None:
        pass

    def resume(self, partitions: list[TopicPartition]) -> None:
        pass

    def commit(self, **_: Any) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prefix", required=True, help="the backlog's topic prefix")
    parser.add_argument("--encoding", default="json")
    parser.add_argument("--sample", type=int, default=20000, help="records read from Kafka")
    parser.add_argument("--records", type=int, default=300000, help="records replayed")
    args = parser.parse_args()
    configure_logging("INFO", "json")
    settings = Settings(http_port=None)
    records = sample(settings, [f"{args.prefix}.bench.{t}" for t in TABLES], args.sample)

    from bench.backlog import watched_tables

    watched = watched_tables(args.prefix, args.encoding)
    handlers = [h for f in (customers, orders, products) for h in handlers_of(f)]
    done = itertools.count(1)
    replay = Replay(records, args.records)
    runtime: Runtime

    def observe(handled: Handled) -> None:
        if next(done) >= args.records:
            runtime.stop()

    class Replayed(Runtime):
        def _consumer(self) -> Any:
            return replay

    runtime = Replayed(settings, watched, Router(handlers, watched.tables), observer=observe)
    runtime.tail = runtime.control_tail = None  # no dead-letter or control topic to read
    wall, cpu = time.perf_counter(), time.process_time()
    runtime.run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = next(done) - 1
    report = {
        "records": n,
        "records_per_s": round(n / wall),
        "cpu_us_per_record": round(cpu / n * 1e6, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "routed": runtime.metrics.record_totals(),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
