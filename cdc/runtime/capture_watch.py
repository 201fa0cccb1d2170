"""The consumer's capture watcher. Debezium can stop capturing while the consumer fetches on
happily, seeing nothing (a FAILED task, a watched table re-created outside the publication).
Every ``capture_check_interval_s`` a thread asks Kafka Connect and PostgreSQL
(`cdc.capture_health`) and says what it finds: one log line when it changes, the
``cdc_capture_problems`` gauge, and ``/readyz``."""

from __future__ import annotations

import structlog

from cdc.capture_health import CaptureHealth, read_capture_health
from cdc.runtime.metrics import Probes
from cdc.runtime.periodic import Periodic
from cdc.runtime.process_metrics import ProcessMetrics
from cdc.settings import Settings
from cdc.slot_health import SlotHealth
from cdc.tables.config import WatchedTables

log = structlog.get_logger("cdc.capture")

# The gauge's `check` label: kinds of problem, and `unknown` for what could not be asked.
CHECKS = ("connector", "task", "publication", "table", "slot", "unknown")


class CaptureWatcher:
    """Runs `check` now and then every interval on a thread of its own until `stop`."""

    def __init__(
        self, settings: Settings, watched: WatchedTables, metrics: ProcessMetrics, probes: Probes
    ) -> None:
        self.settings = settings
        self.watched = watched
        self.metrics = metrics
        self.probes = probes
        # A check gives up within its 10 s timeouts.
        self._thread = Periodic(
            "capture", settings.capture_check_interval_s, self._check_or_say, at_start=True
        )
        self._problems: set[str] = set()
        self._unknown: set[str] = set()
        self._warnings: set[str] = set()

    def start(self) -> None:
        if not self._thread.start():
            log.info("capture.watch_off", connector=self.watched.connector.name)

    def stop(self) -> None:
        self._thread.stop()

    def _check_or_say(self) -> None:
        try:
            self.check()
        except Exception as exc:  # a bug here must not take the consumer down
            log.exception("capture.check_failed", connector=self.watched.connector.name)
            self.report(CaptureHealth(unknown=[f"the check failed: {exc!r}"]))

    def check(self) -> CaptureHealth:
        file = str(self.settings.watched_tables)
        health = read_capture_health(self.watched, self.settings, file)
        self.report(health)
        return health

    def report(self, health: CaptureHealth) -> None:
        name = self.watched.connector.name
        for check in CHECKS:
            count = (
                len(health.unknown)
                if check == "unknown"
                else sum(p.check == check for p in health.problems)
            )
            self.metrics.capture_problems.labels(name, check).set(count)
        problems = {p.one_line(): p for p in health.problems}
        for key in sorted(problems.keys() - self._problems):
            p = problems[key]
            log.error(
                "capture.stopped",
                connector=name,
                check=p.check,
                subject=p.subject,
                problem=p.problem,
                remedy=p.fix,
            )
        if self._problems and not problems:
            log.info("capture.resumed", connector=name, was=sorted(self._problems))
        for reason in sorted(set(health.unknown) - self._unknown):
            log.warning("capture.unknown", connector=name, reason=reason)
        warnings = {f"{w.subject}: {w.problem}": w for w in health.warnings}
        for key in sorted(warnings.keys() - self._warnings):
            w = warnings[key]
            log.warning(
                "capture.warning", connector=name, subject=w.subject, problem=w.problem, fix=w.fix
            )
        self._warnings = set(warnings)
        if health.slot is not None:
            self._slot_metrics(health.slot)
        self._problems, self._unknown = set(problems), set(health.unknown)
        self.probes.capture = (
            f"capture of connector {name} stopped: " + " | ".join(sorted(problems))
            if problems
            else None
        )

    def _slot_metrics(self, slot: SlotHealth) -> None:
        labels = (self.watched.connector.name, slot.slot)
        m = self.metrics
        m.slot_active.labels(*labels).set(1 if slot.active else 0)
        m.slot_lost.labels(*labels).set(1 if slot.lost or not slot.exists else 0)
        m.slot_retained_wal.labels(*labels).set(slot.retained_bytes or 0)
        m.slot_unconfirmed_wal.labels(*labels).set(slot.unconfirmed_bytes or 0)
        m.slot_safe_wal.labels(*labels).set(
            -1 if slot.safe_wal_size is None else slot.safe_wal_size
        )
