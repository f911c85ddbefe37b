"""A deployment's alert rules as a Prometheus alerting-rules file (``conveyor export prometheus``): the same
expression in PromQL over the metric names of docs/metrics.md, the same ``for``, labels and annotations.

The PromQL reads the control plane's aggregated ``/metrics`` (one scrape sees the whole stack), whose samples
carry ``component`` and ``instance``; scrape it with ``honor_labels: true`` so they stay as written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from conveyor.observe.alerts import Rule


def prometheus_rules(deployment: str, rules: Iterable[Rule]) -> dict[str, Any]:
    """The rules file (as data) of ``deployment``'s ``rules``: one group named after it."""
    return {
        "groups": [
            {
                "name": f"conveyor-{deployment}",
                "rules": [_alerting_rule(rule) for rule in rules],
            }
        ]
    }


def _alerting_rule(rule: Rule) -> dict[str, Any]:
    annotations = {
        "expr": rule.expr.text,
        "threshold": f"{rule.op} {rule.threshold:g}",
        "value": "{{ $value }}",
    }
    if rule.summary:
        annotations["summary"] = rule.summary  # the same {{ $value }} / {{ $labels.x }} templates
    return {
        "alert": rule.name,
        "expr": f"{rule.expr.promql(rule.deployment)} {rule.op} {rule.threshold!r}",
        "for": rule.for_text,
        "labels": {"deployment": rule.deployment, "severity": rule.severity, **rule.labels},
        "annotations": annotations,
    }


def rules_yaml(document: dict[str, Any]) -> str:
    """The rules file's text."""
    text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000)
    return text
