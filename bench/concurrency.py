"""What per-key concurrency buys for a slow, I/O-bound handler (5 ms, like a remote call or a
round trip to a busy database): changes per second through the runtime's worker pool at 1, 4,
8 and 16 workers, for changes of many different keys and of one key (which must stay in
order, so they run one at a time whatever the pool size).

    python -m bench.concurrency                 # 2,000 changes per measure
    python -m bench.concurrency --changes 500

No Kafka: the decoded change goes through the same `KeyedWorkers` and `Dispatcher` the
consumer uses. Prints one JSON object; the README's benchmark section records a run."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time

import structlog

from cdc import Change, Context, on_change
from cdc.routing import Route, handlers_of
from cdc.runtime import Dispatcher, Resources
from cdc.runtime.work import KeyedWorkers
from cdc.settings import Settings
from tests.corpus.load import first_insert

TABLE = "corpus.all_types"


def slow(change: Change, ctx: Context) -> None:
    time.sleep(0.005)


def measure(workers: int, changes: int, keys: int) -> float:
    route = Route(handlers_of(on_change(TABLE)(slow))[-1], snapshot_reads=False)
    dispatcher = Dispatcher(Resources(Settings()))
    pool = KeyedWorkers(workers)
    change = first_insert()
    start = time.perf_counter()
    for i in range(changes):
        pool.submit([(i % keys, lambda: dispatcher.run(route, change) and None)])
    pool.wait_idle()
    elapsed = time.perf_counter() - start
    pool.close()
    return changes / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=2000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results = {
        f"{workers}_workers": {
            "distinct_keys_per_s": round(measure(workers, args.changes, args.changes)),
            "one_key_per_s": round(measure(workers, args.changes // 4, 1)),
        }
        for workers in (1, 4, 8, 16)
    }
    print(
        json.dumps(
            {
                "handler": "sync, sleeps 5 ms",
                "changes": args.changes,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
