"""``kind: AlertRule`` documents and a Deployment's ``alerts`` list, read from YAML: what is accepted, and
every problem reported as ``source:line: path: message``."""

from __future__ import annotations

import pytest

from conveyor import errors
from conveyor.spec import load_documents
from conveyor.spec.resources import AlertRule, Deployment

GOOD = """\
apiVersion: conveyor.dev/v1
kind: AlertRule
metadata:
  name: slow
spec:
  expr: p95_latency(1m)
  threshold: 0.5
  for: 30s
  severity: critical
  deployment: iris
  labels: {team: ml}
  webhooks: [http://127.0.0.1:9/hook]
---
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: iris
spec:
  model: iris:1
  alerts:
    - name: error-rate
      threshold: 0.1
    - name: drift
      enabled: false
"""

BAD = """\
apiVersion: conveyor.dev/v1
kind: AlertRule
metadata:
  name: slow
spec:
  expr: eror_rate(5m)
  threshold: 0.5
  for: 1x
  severity: urgent
  labels: {alertname: x}
  webhooks: [ftp://host/x]
---
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: iris
spec:
  model: iris:1
  alerts:
    - name: mine
      expr: queue_depth
    - name: two
      expr: latency_quantile(2, 5m)
      threshold: 1
"""


def test_alert_rules_and_a_deployments_alerts_are_read_and_written_back() -> None:
    rule, deployment = load_documents(GOOD)
    assert isinstance(rule, AlertRule) and isinstance(deployment, Deployment)
    assert rule.to_dict()["spec"] == {
        "expr": "p95_latency(1m)",
        "threshold": 0.5,
        "for": "30s",
        "severity": "critical",
        "labels": {"team": "ml"},
        "webhooks": ["http://127.0.0.1:9/hook"],
        "deployment": "iris",
    }
    assert deployment.to_dict()["spec"]["alerts"] == [
        {"threshold": 0.1, "name": "error-rate"},
        {"name": "drift", "enabled": False},
    ]


def test_a_deployment_without_alerts_keeps_its_fingerprint_form() -> None:
    text = GOOD.split("---\n")[1].split("  alerts:")[0]
    (deployment,) = load_documents(text)
    assert "alerts" not in deployment.to_dict()["spec"]


def test_every_problem_of_a_rule_is_reported_with_its_line() -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        load_documents(BAD, source="rules.yaml")
    assert caught.value.message.splitlines() == [
        "rules.yaml:6: spec.expr: unknown indicator 'eror_rate'; did you mean 'error_rate'? known: "
        "agreement, comparisons, drift_mean_shift, drift_psi, error_rate, held_requests, in_flight, "
        "label_agreement, latency_quantile, queue_depth, request_rate, requests, restarts, "
        "shadow_error_rate, shadow_latency_quantile, shadow_requests, pNN_latency, shadow_pNN_latency",
        "rules.yaml:8: spec.for: invalid duration '1x': use a number and a unit: ms, s, m or h (e.g. 30s)",
        "rules.yaml:9: spec.severity: 'urgent' is not one of 'info', 'warning' or 'critical'",
        "rules.yaml:10: spec.labels: label 'alertname' is set by Conveyor; use another name",
        "rules.yaml:11: spec.webhooks: invalid webhook URL 'ftp://host/x': use http://HOST[:PORT]/PATH or "
        "https://...",
        "rules.yaml:20: spec.alerts[0]: rule 'mine' needs expr and threshold (only the built-in rules "
        "error-rate, p99-latency, crash-loop, drift can be changed field by field)",
        "rules.yaml:23: spec.alerts[1].expr: quantile 2 must be between 0 and 1 (exclusive), e.g. 0.99",
    ]


def test_a_rule_named_twice_in_a_deployment_is_refused() -> None:
    text = GOOD.split("---\n")[1] + "    - name: drift\n      threshold: 1\n"
    with pytest.raises(errors.InvalidInput, match=r"<string>:7: spec.alerts: rule 'drift' is listed twice"):
        load_documents(text)
