"""Prometheus alerting rules for the consumer's metrics, one source for every place that loads
them: `deploy/prometheus/alerts.yml` (docker compose's Prometheus, `cdc deploy alerts`) and
the `PrometheusRule` beside the Kubernetes manifests. The README's runbook says what each
means and what to do; `deploy/prometheus/alerts.test.yml` tests them with promtool."""

from __future__ import annotations

from typing import Any

from cdc.deploy.yaml_out import dump

# The scrape job every rule expects (compose's prometheus.yml and the ServiceMonitor set it).
JOB = "cdc"
PROMETHEUS_IMAGE = "prom/prometheus:v2.53.4"
# Defaults of the thresholds; a team copies the rules and changes them where theirs differ.
RETAINED_WAL_BYTES = 1024**3  # as CDC_SLOT_WAL_WARN_BYTES
LAG_P99_SECONDS = 60


def _rule(
    alert: str, expr: str, for_: str, severity: str, summary: str, **labels: str
) -> dict[str, Any]:
    return {
        "alert": alert,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **labels},
        "annotations": {"summary": summary, "runbook": f"README.md#alert-{alert.lower()}"},
    }


RULES: list[dict[str, Any]] = [
    _rule(
        "CdcSlotLost",
        "max by (connector, slot) (cdc_slot_lost) == 1",
        "0m",
        "critical",
        "Replication slot {{ $labels.slot }} is lost or missing: changes were lost",
    ),
    _rule(
        "CdcSlotInactive",
        "max by (connector, slot) (cdc_slot_active) == 0",
        "10m",
        "warning",
        "No connector reads replication slot {{ $labels.slot }}: the WAL it holds grows",
    ),
    _rule(
        "CdcSlotRetainedWalHigh",
        f"max by (connector, slot) (cdc_slot_retained_wal_bytes) > {RETAINED_WAL_BYTES}",
        "15m",
        "warning",
        "Replication slot {{ $labels.slot }} holds {{ $value | humanize1024 }}B of WAL",
    ),
    _rule(
        "CdcConnectorTaskFailed",
        'max by (connector) (cdc_capture_problems{check=~"connector|task"}) > 0',
        "2m",
        "critical",
        "Connector {{ $labels.connector }} or its task is not running: nothing is captured",
    ),
    _rule(
        "CdcCaptureStopped",
        'max by (connector, check) (cdc_capture_problems{check=~"publication|table"}) > 0',
        "2m",
        "critical",
        "A watched table of {{ $labels.connector }} is not captured ({{ $labels.check }})",
    ),
    _rule(
        "CdcCommitToHandlerLagHigh",
        "histogram_quantile(0.99, sum by (table, le) "
        f"(rate(cdc_end_to_end_lag_seconds_bucket[5m]))) > {LAG_P99_SECONDS}",
        "10m",
        "warning",
        "Changes of {{ $labels.table }} reach their handlers {{ $value | humanizeDuration }} "
        "after commit (p99)",
    ),
    _rule(
        "CdcDeadLetters",
        "sum by (table, handler) (increase(cdc_dead_lettered_total[10m])) > 0",
        "0m",
        "warning",
        "{{ $value }} change(s) of {{ $labels.table }} dead-lettered by {{ $labels.handler }}",
    ),
    _rule(
        "CdcConsumerDown",
        f'up{{job="{JOB}"}} == 0',
        "5m",
        "critical",
        "Consumer {{ $labels.instance }} does not answer /metrics",
    ),
]


def rule_groups() -> dict[str, Any]:
    return {"groups": [{"name": "cdc", "rules": RULES}]}


def render_alerts() -> str:
    """`deploy/prometheus/alerts.yml`."""
    return dump(rule_groups())


def monitoring_manifests(meta: dict[str, Any], labels: dict[str, str]) -> list[dict[str, Any]]:
    """A PrometheusRule with the rules and a ServiceMonitor for the metrics Service, for the
    Prometheus Operator; the scrape job is named as the rules expect."""
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": meta,
            "spec": rule_groups(),
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": labels},
                "endpoints": [
                    {
                        "port": "http",
                        "path": "/metrics",
                        "interval": "30s",
                        "relabelings": [{"targetLabel": "job", "replacement": JOB}],
                    }
                ],
            },
        },
    ]
