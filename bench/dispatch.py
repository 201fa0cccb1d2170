"""What routing and running handlers add to decoding, per record, on the captured corpus
(JSON with schemas, the data topic's records): decode only; decode, gate, route and run one
no-op handler (sync, with a row model, async); with the per-run log line on and filtered out.
An async handler that has proven quick runs as the consumer thread runs it: a fetch's runs
(500) handed to the event loop at once (``async_noop``); ``async_noop_alone`` is one run at a
time, each handed over and waited for, as on a worker thread.
Then, for each encoding, the issue's measure: decode only, and decode, route and run a handler
reading three columns (by name, and through a three-field row model). The same for the
outbox's domain events: decode only, and a no-op event handler with a payload model.

    python -m bench.dispatch                  # 100k records per measure
    python -m bench.dispatch --records 20000

No Kafka: this is the consumer's per-record CPU cost between `poll()` and `store_offsets()`.
Prints one JSON object; the README's benchmark section records a run."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import threading
from typing import Any

import structlog

from bench.decode import rate
from cdc import Change, Context, DomainEvent, Row, on_change, on_event
from cdc.routing import Route, Router, handlers_of
from cdc.runtime import Dispatcher, Resources
from cdc.runtime.metrics import Metrics
from cdc.runtime.records import Handled
from cdc.runtime.route import RouteStage
from cdc.runtime.tally import Tally
from cdc.settings import Settings
from tests.corpus.load import (
    DATA,
    ENCODINGS,
    OUTBOX,
    OrderPlaced,
    Record,
    decode,
    decoder,
    records,
)

TABLE = "corpus.all_types"
_AT = ("corpus.corpus.all_types", 0, 0)  # where a record came from, as the stages pass it


class Slim(Row):
    id: int
    c_int: int | None = None
    c_text: str | None = None


def noop(change: Change, ctx: Context) -> None:
    return None


def reads_three(change: Change[Any], ctx: Context) -> None:
    """What the issue's targets measure: a handler reading three columns."""
    row = change.after
    if row is not None:
        _ = row["id"], row["c_int"], row["c_text"]


def reads_three_model(change: Change[Slim], ctx: Context) -> None:
    row = change.after
    if row is not None:
        _ = row.id, row.c_int, row.c_text


async def async_noop(change: Change, ctx: Context) -> None:
    return None


def on_event_noop(event: DomainEvent, ctx: Context) -> None:
    return None


class _Pipeline:
    """Decode, gate, route and run one record, as the consumer does; `close()` stops the
    dispatcher's event loop thread, which would otherwise stay for the later measures."""

    def __init__(self, declared: Any, encoding: str = "json") -> None:
        self.decoder = decoder(encoding)
        self.router = Router(handlers_of(declared))
        self.dispatcher = Dispatcher(Resources(Settings()))
        # The consumer's own gate-and-route stage (nothing here is unrouted or parked).
        self.route = RouteStage(self.router, None, "skip", "", threading.Event())  # type: ignore[arg-type]
        self.tally = Tally(Metrics())

    def __call__(self, r: Record) -> None:
        event = decode(self.decoder, r)
        (taken,) = self.route.batch([(None, _AT, event)], self.tally)  # type: ignore[list-item]
        if isinstance(taken, Handled):
            return
        dispatcher = self.dispatcher
        for route in taken.routes:
            assert isinstance(event, Change | DomainEvent)
            if dispatcher.debug:
                dispatcher.run(route, event)
                continue
            # As the consumer runs a sync handler that has proven quick: its first
            # attempt, and the rest of the run only if that was not simply done.
            tried = dispatcher.first(route, event)
            if not isinstance(tried, float):
                dispatcher.try_run(route, event, first=tried)

    def close(self) -> None:
        self.dispatcher.close()


class _Batched(_Pipeline):
    """Decode, gate and route each record; run the handlers of a fetch's worth together."""

    def __init__(self, declared: Any, size: int = 500) -> None:
        super().__init__(declared)
        self.size = size
        self.runs: list[tuple[Route, Change | DomainEvent]] = []

    def __call__(self, r: Record) -> None:
        event = decode(self.decoder, r)
        if self.router.gate.admit(event):
            for route in self.router.routes_for(event) or ():
                assert isinstance(event, Change | DomainEvent)
                self.runs.append((route, event))
        if len(self.runs) >= self.size:
            self.dispatcher.try_run_all(self.runs)
            self.runs.clear()


def logs(level: int) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    count = parser.parse_args().records
    sample = [r for r in records("json") if r.kafka.topic == DATA and r.value is not None]
    dec = decoder("json")
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "records_per_measure": count,
        "decode_only_per_s": round(
            rate(lambda r: dec.decode(r.key, r.value, r.kafka), sample, count)
        ),
    }
    for level_name, level in (("logged", logging.INFO), ("quiet", logging.WARNING)):
        logs(level)
        for name, func, options in (
            ("noop", noop, {}),
            ("noop_model", noop, {"model": Slim}),
            ("async_noop", async_noop, {}),
            ("async_noop_alone", async_noop, {}),
        ):
            declared = on_change(TABLE, snapshot_reads=True, **options)(func)
            handle = _Batched(declared) if name == "async_noop" else _Pipeline(declared)
            per_s = rate(handle, sample, count)
            handle.close()
            results[f"{name}/{level_name}"] = {
                "per_s": round(per_s),
                "us_per_record": round(1e6 / per_s, 1),
                "ratio_to_decode": round(per_s / results["decode_only_per_s"], 2),
            }
    logs(logging.WARNING)
    for encoding in ENCODINGS:
        data = [r for r in records(encoding) if r.kafka.topic == DATA and r.value is not None]
        enc = decoder(encoding)
        decoded = rate(lambda r, enc=enc: enc.decode(r.key, r.value, r.kafka), data, count)
        measures: dict[str, float] = {"decode_only_us": round(1e6 / decoded, 1)}
        for name, func, options in (
            ("reads_three", reads_three, {}),
            ("reads_three_model", reads_three_model, {"model": Slim}),
        ):
            handle = _Pipeline(on_change(TABLE, snapshot_reads=True, **options)(func), encoding)
            measures[f"{name}_us"] = round(1e6 / rate(handle, data, count), 1)
            handle.close()
        results[f"{encoding}/quiet"] = measures
    events = [r for r in records("json") if r.kafka.topic == f"{OUTBOX}order"]
    results["event_decode_only_per_s"] = round(rate(lambda r: decode(dec, r), events, count))
    for level_name, level in (("logged", logging.INFO), ("quiet", logging.WARNING)):
        logs(level)
        handle = _Pipeline(on_event("order-placed", model=OrderPlaced)(on_event_noop))
        per_s = rate(handle, events, count)
        handle.close()
        results[f"event_noop_model/{level_name}"] = {
            "per_s": round(per_s),
            "us_per_record": round(1e6 / per_s, 1),
            "ratio_to_decode": round(per_s / results["event_decode_only_per_s"], 2),
        }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
