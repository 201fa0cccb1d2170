"""Workloads: lanes of handlers, each consumed by a runtime of its own (its own consumer
group, offsets, window, workers, retries, time limit and rate), so a slow or failing one
never holds up another's commits. One process runs any number of them side by side, and
serves one endpoint for all."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from cdc.errors import ConfigError
from cdc.routing import Handler, Router
from cdc.runtime.consumer import Runtime
from cdc.runtime.metrics import Endpoint
from cdc.runtime.process_metrics import ProcessMetrics
from cdc.settings import Settings
from cdc.tables.config import WatchedTables
from cdc.tables.workloads import DEFAULT_WORKLOAD, RateLimit, WorkloadOptions

log = structlog.get_logger("cdc.consumer")


@dataclass(frozen=True)
class Workload:
    """A workload's settings, resolved: the file's options over the environment's."""

    name: str
    settings: Settings
    rate: RateLimit | None
    replicas: int = 1
    keep_order: bool = True


def resolve(name: str, settings: Settings, watched: WatchedTables) -> Workload:
    """The settings a workload's runtime runs with. Undeclared, it takes the environment's
    (``cdc check`` says so)."""
    options = watched.workloads.get(name, WorkloadOptions())
    retry = options.retry
    group = options.group_id or (
        settings.group_id if name == DEFAULT_WORKLOAD else f"{settings.group_id}.{name}"
    )
    update: dict[str, object] = {"group_id": group}
    for field, value in (
        ("concurrency", options.concurrency),
        ("max_in_flight", options.max_in_flight),
        ("retry_attempts", retry.attempts),
        ("retry_backoff_s", retry.backoff_s),
        ("retry_backoff_max_s", retry.backoff_max_s),
        ("retry_jitter", retry.jitter),
        ("handler_timeout_s", options.timeout_s),
        ("dead_letter_topic", options.dead_letter_topic),
    ):
        if value is not None:
            update[field] = value
    return Workload(
        name,
        settings.model_copy(update=update),
        options.rate,
        options.replicas,
        options.keep_order,
    )


def workload_names(handlers: Iterable[Handler], watched: WatchedTables) -> list[str]:
    """Every workload a handler names or the file declares: `default` first."""
    names = {h.workload for h in handlers} | set(watched.workloads)
    return sorted(names, key=lambda n: (n != DEFAULT_WORKLOAD, n))


def plan(
    settings: Settings,
    watched: WatchedTables,
    handlers: list[Handler],
    only: Iterable[str] = (),
) -> list[tuple[Workload, list[Handler]]]:
    """Each workload to run with its handlers: those named in ``only`` (else every one that
    has handlers). Raises `ConfigError` for a name no handler uses and the file does not
    declare."""
    known = workload_names(handlers, watched)
    chosen = list(dict.fromkeys(only)) or known
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise ConfigError(
            "--workload",
            [
                f"no workload {n!r}: the handlers and the file know {', '.join(known)}"
                for n in unknown
            ],
        )
    out = []
    for name in chosen:
        mine = [h for h in handlers if h.workload == name]
        if mine:
            out.append((resolve(name, settings, watched), mine))
        else:
            log.warning("workload.no_handlers", workload=name)
    if not out:
        raise ConfigError("handlers", [f"no handler runs in {', '.join(chosen)}"])
    return out


class Workloads:
    """The runtimes of one process, one per workload, run side by side until `stop`; one
    endpoint serves their metrics (each series labelled with its workload) and probes."""

    def __init__(
        self,
        settings: Settings,
        watched: WatchedTables,
        plans: list[tuple[Workload, list[Handler]]],
    ) -> None:
        self.settings = settings
        self.process = ProcessMetrics()  # watched once, by the first runtime
        self.runtimes = [
            Runtime(
                w.settings,
                watched,
                Router(found, watched.tables),
                workload=w.name,
                rate=w.rate,
                keep_order=w.keep_order,
                process=self.process,
            )
            for w, found in plans
        ]
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Labelled(self.runtimes))
        self.registry.register(self.process.registry)
        self.endpoint: Endpoint | None = None
        self._failed: list[BaseException] = []

    def stop(self) -> None:
        for runtime in self.runtimes:
            runtime.stop()

    def live(self) -> tuple[bool, str]:
        return _all((r.workload, r.probes.live()) for r in self.runtimes)

    def ready(self) -> tuple[bool, str]:
        return _all((r.workload, r.probes.ready()) for r in self.runtimes)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def run(self) -> None:
        """Run every runtime (the first also watches the capture and prunes the ledger);
        when one fails, stop the others and raise its error."""
        s = self.settings
        if s.http_port is not None:
            self.endpoint = Endpoint(self.exposition, self, s.http_host, s.http_port).start()
            log.info(
                "endpoint.serving",
                host=s.http_host,
                port=self.endpoint.port,
                workloads=[r.workload for r in self.runtimes],
            )
        threads = [
            threading.Thread(target=self._run, args=(r, i == 0), name=f"cdc-{r.workload}")
            for i, r in enumerate(self.runtimes)
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            if self.endpoint is not None:
                self.endpoint.close()
        if self._failed:
            raise self._failed[0]

    def _run(self, runtime: Runtime, watch: bool) -> None:
        try:
            runtime.run(serve=False, watch=watch)
        except BaseException as exc:
            log.exception("workload.failed", workload=runtime.workload)
            self._failed.append(exc)
            self.stop()


def _all(results: Iterable[tuple[str, tuple[bool, str]]]) -> tuple[bool, str]:
    failing = [f"{name}: {why}" for name, (ok, why) in results if not ok]
    return (False, "; ".join(failing)) if failing else (True, "ok")


class _Labelled:
    """The runtimes' registries as one, each sample labelled with its workload (a family
    shared by several is written once, as the text format requires)."""

    def __init__(self, runtimes: list[Runtime]) -> None:
        self._runtimes = runtimes

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for runtime in self._runtimes:
            workload = runtime.workload
            for family in runtime.metrics.registry.collect():
                out = merged.get(family.name)
                if out is None:
                    out = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                out.samples += [
                    Sample(
                        s.name, {**s.labels, "workload": workload}, s.value, s.timestamp, s.exemplar
                    )
                    for s in family.samples
                ]
        return iter(merged.values())
