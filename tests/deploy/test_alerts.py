"""The alerting rules and the dashboard: valid for the real Prometheus tools (promtool from
Debian's package), tested with promtool on series named as the consumer exports them, and
naming only metrics the consumer exports; loaded by compose's Prometheus and, for the
Prometheus Operator, by the Kubernetes manifests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cdc.deploy import served_port
from cdc.deploy.alerts import JOB, render_alerts, rule_groups
from cdc.deploy.compose import compose_file
from cdc.runtime.metrics import Metrics
from cdc.runtime.process_metrics import ProcessMetrics
from cdc.settings import Settings
from tests.deploy.conftest import ROOT
from tests.deploy.schemas import prometheus_operator_schemas

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "cdc-dashboard.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make test` installs Debian's prometheus package"
    done = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def exported() -> set[str]:
    """Every series name the consumer's /metrics can show."""
    names = set()
    registries = (Metrics().registry, ProcessMetrics().registry)
    for family in (f for r in registries for f in r.collect()):
        names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def named(expr: str) -> set[str]:
    return set(re.findall(r"\b(cdc_[a-z_]+)\b", expr))


def test_the_committed_rules_are_what_the_code_makes() -> None:
    assert (PROMETHEUS / "alerts.yml").read_text() == render_alerts()


def test_promtool_accepts_the_rules_and_the_config_and_their_tests_pass() -> None:
    assert "SUCCESS: 8 rules found" in promtool("check", "rules", "alerts.yml")
    promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")


def test_every_alert_is_tested_and_every_series_they_use_is_exported() -> None:
    rules = rule_groups()["groups"][0]["rules"]
    tests: dict[str, Any] = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    assert tested == {r["alert"] for r in rules}
    used = set().union(*(named(r["expr"]) for r in rules))
    fed = {s["series"].split("{")[0] for case in tests["tests"] for s in case["input_series"]} - {
        "up"
    }
    assert used <= exported(), used - exported()
    assert fed <= exported(), fed - exported()


def test_every_series_the_dashboard_shows_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(named(t["expr"]) for p in dashboard["panels"] for t in p["targets"]))
    assert used <= exported(), used - exported()
    assert {"cdc_slot_retained_wal_bytes", "cdc_end_to_end_lag_seconds_bucket"} <= used


def test_compose_runs_prometheus_with_the_rules_on_request() -> None:
    service = compose_file(Settings())["services"]["prometheus"]
    assert service["profiles"] == ["monitoring"]
    assert service["volumes"] == ["./deploy/prometheus:/etc/prometheus:ro"]
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB
    assert job["static_configs"] == [{"targets": [f"consumer:{served_port(Settings())}"]}]
    assert config["rule_files"] == ["alerts.yml"]


@pytest.mark.parametrize("manifest", ["kubernetes.yaml"])
def test_kubernetes_gets_the_rules_and_a_service_monitor(manifest: str) -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / manifest).read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert kinds["PrometheusRule"]["spec"] == rule_groups()
    monitor = kinds["ServiceMonitor"]["spec"]
    service = next(d for d in docs if d["kind"] == "Service")
    assert monitor["selector"]["matchLabels"] == service["metadata"]["labels"]
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["relabelings"] == [{"targetLabel": "job", "replacement": JOB}]


def test_the_rules_and_the_monitor_validate_against_the_operators_crds() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    schemas = prometheus_operator_schemas()
    for kind in ("PrometheusRule", "ServiceMonitor"):
        (doc,) = [d for d in docs if d["kind"] == kind]
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        jsonschema.validate(doc, schemas[kind])
    # Strict: a misspelt field is refused, not pruned away unseen.
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, schemas["ServiceMonitor"])
