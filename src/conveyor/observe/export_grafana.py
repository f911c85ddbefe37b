"""A Grafana dashboard for Conveyor (``conveyor export grafana``): request rate, error rate, p50/p99 latency
per version, queue depth, replicas and drift, over the metric names of docs/metrics.md. Its data source is
an input (``${DS_PROMETHEUS}``) that Grafana asks for on import; a ``deployment`` variable picks one.
"""

from __future__ import annotations

from typing import Any

from conveyor.observe.alert_expr import ERROR_CODES_RE

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
_GW = 'component="gateway",model=~"$deployment"'


def _panel(n: int, title: str, unit: str, targets: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": n + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": (n % 2) * 12, "y": (n // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def _quantile(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (model, version, le) "
        f"(rate(conveyor_request_duration_seconds_bucket{{{_GW}}}[$__rate_interval])))"
    )


def grafana_dashboard(deployment: str | None = None) -> dict[str, Any]:
    """The dashboard JSON, for import into Grafana; ``deployment`` is the variable's default (else all)."""
    rate = "sum by (model, version) (rate(conveyor_requests_total{%s}[$__rate_interval]))"
    errors = rate % f'{_GW},code=~"{ERROR_CODES_RE}"'
    panels = [
        ("Request rate", "reqps", [(rate % _GW, "{{model}} v{{version}}")]),
        ("Error rate", "percentunit", [(f"{errors} / {rate % _GW}", "{{model}} v{{version}}")]),
        (
            "Latency p50 / p99",
            "s",
            [(_quantile(0.5), "p50 {{model}} v{{version}}"), (_quantile(0.99), "p99 {{model}} v{{version}}")],
        ),
        (
            "Queue depth",
            "short",
            [
                (
                    'sum by (model, version) (conveyor_queue_depth{model=~"$deployment"})',
                    "{{model}} v{{version}}",
                )
            ],
        ),
        (
            "Replicas",
            "short",
            [
                (
                    'sum by (version, state) (conveyor_replicas{deployment=~"$deployment"})',
                    "v{{version}} {{state}}",
                )
            ],
        ),
        (
            "Drift (PSI, worst feature)",
            "short",
            [
                (
                    'max by (model, version) (conveyor_drift_psi{model=~"$deployment"})',
                    "{{model}} v{{version}}",
                )
            ],
        ),
    ]
    current = deployment or "$__all"
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus that scrapes Conveyor's control plane (/metrics)",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "title": f"Conveyor: {deployment}" if deployment else "Conveyor",
        "uid": f"conveyor-{deployment}" if deployment else "conveyor",
        "tags": ["conveyor"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "deployment",
                    "label": "Deployment",
                    "type": "query",
                    "datasource": DS,
                    "query": {
                        "query": "label_values(conveyor_requests_total, model)",
                        "refId": "deployments",
                    },
                    "definition": "label_values(conveyor_requests_total, model)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": current, "value": current},
                }
            ]
        },
        "panels": [_panel(n, title, unit, targets) for n, (title, unit, targets) in enumerate(panels)],
    }
