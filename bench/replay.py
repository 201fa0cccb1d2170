"""Our runtime's per-record CPU cost without Kafka and without a stack: the captured corpus's
data records, mixed as the benchmark backlog is (47% inserts, 37% updates, 10% snapshot reads,
3% deletes, 3% tombstones), copied round-robin into four partitions with growing offsets,
replayed through `Runtime.run()` as `cdc run` runs it: fetch, drop, decode, gate, route, a
handler per record, offsets stored per fetch, flow control, metrics; no observer. It stops
once every partition's last offset is stored.

    python -m bench.replay --encoding json --records 200000
    python -m bench.replay --profile           # cProfile's top functions, by own time

CPU time (``process_time``, every thread) from the first fetch to the last offset stored,
best of ``--runs``; ``bench.hotpath`` does the same with a sample read from a backlog on the
stack. Prints one JSON line."""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import random
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message, TopicPartition

from cdc import Change, Context, on_change
from cdc.logs import configure_logging
from cdc.routing import Router, handlers_of
from cdc.runtime import Runtime
from cdc.settings import Settings
from cdc.tables.config import parse_watched_tables
from tests.corpus.load import DATA, Record, decoder, records

PARTITIONS = 4
BATCH = 500


def mix(encoding: str) -> list[Record]:
    """A hundred of the corpus's data records, in the backlog's proportions, shuffled."""
    data = [r for r in records(encoding) if r.kafka.topic == DATA]
    by_op: dict[str, list[Record]] = {}
    for r in data:
        op = "tombstone" if r.value is None else peek(encoding, r)
        by_op.setdefault(op, []).append(r)
    out = [
        by_op[op][i % len(by_op[op])]
        for op, n in (("c", 47), ("u", 37), ("r", 10), ("d", 3), ("tombstone", 3))
        for i in range(n)
    ]
    random.Random(0).shuffle(out)  # noqa: S311 - a fixed order, not secrecy
    return out


def peek(encoding: str, r: Record) -> str:
    event = decoder(encoding).decode(r.key, r.value, r.kafka)
    assert isinstance(event, Change)
    return event.op.value


def messages(encoding: str, total: int) -> list[list[Message]]:
    """``total`` records of the mix, round-robin over the partitions, in fetches."""
    data = mix(encoding)
    next_offset = [0] * PARTITIONS
    out: list[Message] = []
    for i in range(total):
        r = data[i % len(data)]
        p = i % PARTITIONS
        out.append(
            Message(
                topic=DATA,
                partition=p,
                offset=next_offset[p],
                key=r.key,
                value=r.value,
                headers=list(r.kafka.headers),
                timestamp=(1, r.kafka.timestamp_ms or 0),
            )
        )
        next_offset[p] += 1
    return [out[i : i + BATCH] for i in range(0, total, BATCH)]


class Replay:
    """What `Runtime.run()` asks of the client: the fetches in turn; then, once every
    partition's last offset is stored, ``done()``."""

    def __init__(self, batches: list[list[Message]], done: Callable[[], None]) -> None:
        self._batches = batches
        self._done = done
        self._last: dict[tuple[str, int], int] = {}
        for batch in batches:
            for m in batch:
                self._last[str(m.topic()), int(m.partition() or 0)] = int(m.offset() or 0) + 1
        self._stored: dict[tuple[str, int], int] = {}
        self.started: float | None = None

    def subscribe(self, topics: list[str], on_assign: Callable[..., None], **_: Any) -> None:
        on_assign(self, [TopicPartition(t, p) for t, p in sorted(self._last)])

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        if self.started is None:
            self.started = time.process_time()
        if self._batches:
            batch, rest = self._batches[0][:num_messages], self._batches[0][num_messages:]
            self._batches[0:1] = [rest] if rest else []
            return batch
        if self._stored == self._last:
            self._done()
        elif timeout:
            time.sleep(0.001)  # workers still busy: no CPU spent waiting
        return []

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            self._stored[tp.topic, tp.partition] = tp.offset

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *_, **__: None  # pause, resume, commit, close


@on_change("corpus.all_types")
def noop(change: Change, ctx: Context) -> None:
    pass


@on_change("corpus.all_types")
def reads_three(change: Change, ctx: Context) -> None:
    row = change.after
    if row is not None:
        _ = row["id"], row["c_int"], row["c_text"]


def replay(encoding: str, total: int, handler: Any) -> tuple[float, Runtime]:
    """CPU seconds from the first fetch to the last offset stored."""
    watched = parse_watched_tables(
        f"connector: {{topic_prefix: corpus, encoding: {encoding}}}\n"
        "tables: {corpus.all_types: {}}"
    )
    settings = Settings(http_port=None, capture_check_interval_s=0, ledger_prune_interval_s=0)
    router = Router(handlers_of(handler), watched.tables)
    runtime: Runtime

    class Replayed(Runtime):
        def _consumer(self) -> Any:
            return kafka

    runtime = Replayed(settings, watched, router, decoder=decoder(encoding))
    runtime.tail = runtime.control_tail = None  # no dead-letter or control topic to read
    kafka = Replay(messages(encoding, total), runtime.stop)
    # The replayed records are made beforehand, as a real consumer never holds them all:
    # kept out of the collector's way, or its full collections would walk each of them.
    gc.freeze()
    try:
        runtime.run()
    finally:
        gc.unfreeze()
    assert kafka.started is not None
    return time.process_time() - kafka.started, runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoding", default="json")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--handler", choices=("noop", "reads_three"), default="noop")
    parser.add_argument("--profile", action="store_true", help="one run under cProfile")
    args = parser.parse_args()
    configure_logging("INFO", "json")  # as `cdc run`: logs to stderr
    handler = noop if args.handler == "noop" else reads_three
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        replay(args.encoding, args.records, handler)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(35)
        return
    best = min(replay(args.encoding, args.records, handler)[0] for _ in range(args.runs))
    _, runtime = replay(args.encoding, 1000, handler)
    report = {
        "encoding": args.encoding,
        "handler": args.handler,
        "records": args.records,
        "cpu_us_per_record": round(best / args.records * 1e6, 2),
        "routed (1000)": runtime.metrics.record_totals(),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
