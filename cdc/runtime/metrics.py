"""What the consumer tells its operator: Prometheus metrics, and ``/healthz`` / ``/readyz``
for Kubernetes probes, served on one small HTTP endpoint."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.metrics_core import HistogramMetricFamily

log = structlog.get_logger("cdc.consumer")

# Handler calls: sub-millisecond no-ops to slow remote calls.
_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Commit to handled: Debezium's own delay is around a second; backlogs run to hours.
_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class PlainHistogram:
    """A labelled histogram whose ``observe`` costs a third of prometheus_client's (which
    takes a lock per bucket and per sum, and looks for the bucket in a Python loop): counts
    kept per series in a list, exposed as a histogram family when scraped. Two of these are
    observed per record."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self._bounds = [*buckets, math.inf]
        # The `le` labels as prometheus_client writes them: 0.5, 1.0, +Inf.
        self._les = [repr(float(b)) for b in buckets] + ["+Inf"]
        # Per series: the count in each bucket (not cumulative), then the sum.
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, labels: tuple[str, ...], amount: float) -> None:
        self.observe_all(((labels, amount),))

    def observe_all(self, observed: Iterable[tuple[tuple[str, ...], float]]) -> None:
        """Many observations under one lock (negative amounts count as 0)."""
        bounds, width, every = self._bounds, len(self._bounds) + 1, self._series
        first, bucket = self._bounds[0], bisect.bisect_left
        # Two of these per record: the series looked up only when the labels change (a
        # batch's observations mostly share them), the bucket searched for only above the
        # first (where most handler runs are).
        last: tuple[str, ...] | None = None
        series: list[float] = []
        with self._lock:
            for labels, amount in observed:
                if amount < 0.0:
                    amount = 0.0
                if labels != last:
                    last, found = labels, every.get(labels)
                    if found is None:
                        found = every[labels] = [0.0] * width
                    series = found
                series[0 if amount <= first else bucket(bounds, amount)] += 1  # first le >= it
                series[-1] += amount

    def collect(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            taken = [(labels, list(series)) for labels, series in self._series.items()]
        for labels, series in taken:
            cumulative = list(itertools.accumulate(series[:-1]))
            family.add_metric(
                list(labels), list(zip(self._les, cumulative, strict=True)), series[-1]
            )
        return [family]

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]


class Metrics:
    """The consumer's series, in a registry of its own (several runtimes may share a
    process, as in tests)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.records = Counter(
            "cdc_records",
            "Records finished, by table, operation and outcome (handled, dead_lettered, "
            "duplicate, filtered, held_back, unrouted, undecodable).",
            ["table", "op", "outcome"],
            registry=r,
        )
        self.handler_seconds = PlainHistogram(
            "cdc_handler_duration_seconds",
            "Time spent in a handler for one change, over all its attempts.",
            ["handler", "table", "outcome"],
            _DURATION_BUCKETS,
            r,
        )
        self.retries = Counter(
            "cdc_handler_retries",
            "Handler attempts that failed and were retried.",
            ["handler", "table"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "cdc_dead_lettered",
            "Records sent to the dead-letter topic, by table, handler and error.",
            ["table", "handler", "error"],
            registry=r,
        )
        self.timeouts = Counter(
            "cdc_handler_timeouts",
            "Handler attempts that ran past their time limit (failed, and retried).",
            ["handler"],
            registry=r,
        )
        self.abandoned = Gauge(
            "cdc_handler_abandoned_threads",
            "Sync handler calls still running past their time limit (Python cannot stop "
            "them): each holds a thread, and whatever it holds, until it returns.",
            registry=r,
        )
        self.coalesced = Counter(
            "cdc_coalesced",
            "Changes a debounced handler did not run with: a later change of their key ran "
            "in their place.",
            ["handler", "table"],
            registry=r,
        )
        self.end_to_end = PlainHistogram(
            "cdc_end_to_end_lag_seconds",
            "From the source transaction's commit (source.ts_us) to the change being handled.",
            ["table"],
            _LAG_BUCKETS,
            r,
        )
        self.consumer_lag = Gauge(
            "cdc_consumer_lag",
            "Records behind the end of the partition (high watermark minus committed offset).",
            ["topic", "partition"],
            registry=r,
        )
        self.in_flight = Gauge("cdc_in_flight", "Records fetched and not yet finished.", registry=r)
        self.paused = Gauge(
            "cdc_fetch_paused",
            "Partitions whose fetching is paused: they hold their share of the in-flight window.",
            registry=r,
        )
        self.assigned = Gauge(
            "cdc_assigned_partitions", "Partitions this consumer owns.", registry=r
        )
        self.held_keys = Gauge(
            "cdc_held_keys",
            "Keys held behind a dead letter (once per handler holding it): their later changes "
            "are parked behind it until `cdc dlq replay` releases them.",
            registry=r,
        )
        self.orders = Counter(
            "cdc_control_orders",
            "Operators' orders this consumer read from the control topic, by kind (pause, "
            "resume, skip), those read again after a restart included.",
            ["order"],
            registry=r,
        )
        self.paused_handlers = Gauge(
            "cdc_paused_handlers",
            "Handlers an operator paused (`cdc pause`; a whole workload counts once).",
            registry=r,
        )
        self.held_by_pause = Gauge(
            "cdc_held_by_pause",
            "Records held for a paused handler: they run once it is resumed, their offsets "
            "wait until then.",
            registry=r,
        )
        self.oldest_unfinished = Gauge(
            "cdc_oldest_unfinished_seconds",
            "Age of the oldest change fetched and not yet finished, by table (from its Kafka "
            "timestamp: about when Debezium produced it); 0 when none waits.",
            ["table"],
            registry=r,
        )
        self._oldest_tables: set[str] = set()

    def child(self, metric: Counter, *labels: str) -> Any:
        """``metric.labels(*labels)``, kept: the per-record series are looked up once each
        (labels() takes a lock and checks its arguments every time)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:  # two threads may both get here: labels() gives both the same child
            found = self._children[key] = metric.labels(*labels)
        return found

    def librdkafka_stats(self, stats: dict[str, Any]) -> None:
        """Consumer lag per partition, from librdkafka's periodic statistics."""
        for topic, t in stats.get("topics", {}).items():
            for partition, p in t.get("partitions", {}).items():
                lag = p.get("consumer_lag", -1)
                if partition == "-1" or lag < 0:
                    continue  # the internal UA partition, or no committed offset known yet
                self.consumer_lag.labels(topic, partition).set(lag)

    def forget_partition(self, topic: str, partition: int) -> None:
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))

    def record_totals(self) -> dict[str, int]:
        """``outcome/table`` -> records, summed over operations (for the stop log)."""
        totals: dict[str, int] = {}
        for family in self.records.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = f"{sample.labels['outcome']}/{sample.labels['table']}"
                    totals[key] = totals.get(key, 0) + int(sample.value)
        return totals

    def set_oldest_unfinished(self, ages: dict[str, float]) -> None:
        """The gauge per table; a table no longer owned (revoked) goes back to 0."""
        for table in self._oldest_tables - ages.keys():
            self.oldest_unfinished.labels(table).set(0)
        for table, age in ages.items():
            self.oldest_unfinished.labels(table).set(max(age, 0.0))
        self._oldest_tables |= ages.keys()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Probes:
    """Liveness: the fetch loop turned recently. Readiness: the consumer has subscribed,
    its fetch loop runs, it is not stopping, and Debezium captures its tables (``capture``
    says why not)."""

    def __init__(self, stale_after: float = 60.0) -> None:
        self.stale_after = stale_after
        self._beat = time.monotonic()
        self.fetching = False
        self.stopping = False
        self.capture: str | None = None

    def beat(self) -> None:
        self._beat = time.monotonic()

    def live(self) -> tuple[bool, str]:
        idle = time.monotonic() - self._beat
        if idle > self.stale_after:
            return False, f"fetch loop stuck for {idle:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "stopping"
        if not self.fetching:
            return False, "not fetching yet"
        if self.capture is not None:
            return False, self.capture
        return self.live()


class Probing(Protocol):
    def live(self) -> tuple[bool, str]: ...

    def ready(self) -> tuple[bool, str]: ...


class Endpoint:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (port 0: any free port)."""

    def __init__(
        self, exposition: Callable[[], bytes], probes: Probing, host: str, port: int
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, exposition()),
            "/healthz": lambda: _probe(probes.live()),
            "/readyz": lambda: _probe(probes.ready()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?")[0])
                status, ctype, body = route() if route else (404, "text/plain", b"not found\n")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes and probes every few seconds would drown the real logs

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cdc-http", daemon=True
        )

    def start(self) -> Endpoint:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _probe(result: tuple[bool, str]) -> tuple[int, str, bytes]:
    ok, why = result
    return (200 if ok else 503), "text/plain", (why + "\n").encode()
