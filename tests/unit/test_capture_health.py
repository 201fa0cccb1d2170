"""Judging whether Debezium captures the watched tables, from plain data: Connect's status,
the publication's tables; and what the consumer's watcher makes of it."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from cdc.capture_health import (
    CaptureHealth,
    CaptureProblem,
    instance_problems,
    publication_problems,
    read_capture_health,
)
from cdc.connect import summarise_trace
from cdc.findings import Severity
from cdc.runtime.capture_watch import CaptureWatcher
from cdc.runtime.metrics import Probes
from cdc.runtime.process_metrics import ProcessMetrics
from cdc.settings import Settings
from cdc.tables.config import parse_watched_tables

WATCHED = parse_watched_tables(
    "connector: {name: shop, publication: shop_pub, max_record_bytes: 2000000}\n"
    "tables:\n  public.users: {}\n  public.posts: {}\n"
)
# As Kafka Connect reports a task that met a change over max.request.size.
TOO_LARGE = (
    "org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception from producer "
    "send callback\n\tat org.apache.kafka.connect.runtime.WorkerSourceTask.maybeThrow"
    "ProducerSendException(WorkerSourceTask.java:340)\n\tat java.base/java.lang.Thread.run"
    "(Thread.java:840)\nCaused by: org.apache.kafka.common.errors.RecordTooLargeException: "
    "The message is 2600123 bytes when serialized which is larger than 2000000, which is the "
    "value of the max.request.size configuration.\n"
)


def status(*tasks: tuple[str, str], connector: str = "RUNNING") -> dict[str, Any]:
    return {
        "name": "shop",
        "connector": {"state": connector, "worker_id": "w:8083"},
        "tasks": [
            {"id": i, "state": state, "worker_id": "w:8083", "trace": trace}
            for i, (state, trace) in enumerate(tasks)
        ],
    }


def test_a_trace_in_one_line_root_cause_first() -> None:
    summary = summarise_trace(TOO_LARGE)
    assert summary.startswith("org.apache.kafka.common.errors.RecordTooLargeException: The ")
    assert summary.endswith("(in org.apache.kafka.connect.errors.ConnectException: "
                            "Unrecoverable exception from producer send callback)")  # fmt: skip
    assert "\n" not in summary
    assert summarise_trace("java.lang.IllegalStateException: x\n\tat a.b(C.java:1)") == (
        "java.lang.IllegalStateException: x"
    )
    assert len(summarise_trace("E: " + "x" * 5000)) == 600


def test_a_failed_task_names_its_error_and_remedy() -> None:
    assert instance_problems(WATCHED, status(("RUNNING", "")), "cdc.yaml") == []
    (problem,) = instance_problems(WATCHED, status(("FAILED", TOO_LARGE)), "app/cdc.yaml")
    assert (problem.check, problem.subject) == ("task", "connector shop task 0")
    assert problem.problem.startswith("FAILED: org.apache.kafka.common.errors.RecordTooLarge")
    assert problem.fix == (
        "a change is larger than connector.max_record_bytes (2000000 bytes): raise it in "
        "app/cdc.yaml (at most 50331648), then run `cdc connector apply --tables app/cdc.yaml`"
    )
    (other,) = instance_problems(
        WATCHED, status(("FAILED", "java.io.IOException: gone")), "cdc.yaml"
    )
    assert other.problem == "FAILED: java.io.IOException: gone"
    assert "`cdc connector restart`" in other.fix
    (paused, _) = instance_problems(
        WATCHED,
        status(("PAUSED", ""), connector="PAUSED") | {"tasks": [{"id": 0, "state": "PAUSED"}]},
        "cdc.yaml",
    )
    assert (paused.check, paused.subject, paused.problem) == (
        "connector",
        "connector shop",
        "PAUSED",
    )
    # Passing states are not problems.
    assert (
        instance_problems(WATCHED, status(("RESTARTING", ""), ("UNASSIGNED", "")), "cdc.yaml") == []
    )


def test_tables_outside_the_publication() -> None:
    every = {"public.users", "public.posts", "cdc.heartbeat", "cdc.signal"}
    assert publication_problems(WATCHED, every, every, "cdc.yaml") == []
    (missing,) = publication_problems(WATCHED, None, every, "cdc.yaml")
    assert (missing.subject, missing.problem) == (
        "publication shop_pub",
        "does not exist: no change is captured",
    )
    recreated, dropped = publication_problems(
        WATCHED, every - {"public.users", "public.posts"}, every - {"public.users"}, "cdc.yaml"
    )
    assert (recreated.check, recreated.subject) == ("publication", "public.posts")
    assert "is not in publication shop_pub (dropped and re-created?)" in recreated.problem
    assert recreated.fix.startswith("run `cdc connector apply`: it adds the table back")
    assert (dropped.check, dropped.subject) == ("table", "public.users")
    assert dropped.problem == "does not exist (dropped?): none of its changes are captured"


def test_the_watcher_says_it_once_per_change_and_fails_readiness() -> None:
    metrics, probes = ProcessMetrics(), Probes()
    probes.fetching = True
    watcher = CaptureWatcher(Settings(), WATCHED, metrics, probes)
    problem = CaptureProblem(
        Severity.ERROR, "connector shop task 0", "FAILED: E: x", "fix it", "task"
    )

    def gauge(check: str) -> float | None:
        return metrics.registry.get_sample_value(
            "cdc_capture_problems", {"connector": "shop", "check": check}
        )

    with capture_logs() as logs:
        watcher.report(CaptureHealth(problems=[problem]))
        watcher.report(CaptureHealth(problems=[problem]))
        assert probes.ready() == (
            False,
            "capture of connector shop stopped: connector shop task 0: FAILED: E: x; fix: fix it",
        )
        assert (gauge("task"), gauge("publication")) == (1.0, 0.0)
        watcher.report(CaptureHealth(unknown=["Kafka Connect at http://c: refused"]))
        watcher.report(CaptureHealth(unknown=["Kafka Connect at http://c: refused"]))
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("capture.stopped", "error"),
        ("capture.resumed", "info"),
        ("capture.unknown", "warning"),
    ]
    assert logs[0] | {"log_level": ""} == {
        "event": "capture.stopped",
        "log_level": "",
        "connector": "shop",
        "check": "task",
        "subject": "connector shop task 0",
        "problem": "FAILED: E: x",
        "remedy": "fix it",
    }
    # Not knowing is said, and counted, but does not fail readiness.
    assert probes.ready() == (True, "ok")
    assert (gauge("task"), gauge("unknown")) == (0.0, 1.0)


def test_what_cannot_be_asked_is_unknown_not_an_error() -> None:
    # No Connect configured (Strimzi manages it), and no database where the settings say.
    settings = Settings(connect_url="", pg_host="127.0.0.1", pg_port=1)
    health = read_capture_health(WATCHED, settings, "cdc.yaml")
    assert health.problems == []
    assert health.unknown[0] == "Kafka Connect is not configured (CDC_CONNECT_URL is empty)"
    assert health.unknown[1].startswith("PostgreSQL: ")
    unreachable = read_capture_health(
        WATCHED, settings.model_copy(update={"connect_url": "http://127.0.0.1:1"}), "cdc.yaml"
    )
    assert unreachable.unknown[0].startswith("Kafka Connect at http://127.0.0.1:1: ")
