"""The alert rules every deployment has unless its spec changes or disables them (docs/observability.md,
Alerts). Thresholds are for a model served at interactive latency; a deployment tunes them by name.
"""

from __future__ import annotations

from typing import Any, Final

DEFAULT_RULES: Final[dict[str, dict[str, Any]]] = {
    # More than 5% of a version's requests failing for two minutes: a broken version, not a blip.
    "error-rate": {
        "expr": "error_rate(5m)",
        "op": ">",
        "threshold": 0.05,
        "for": "2m",
        "severity": "critical",
        "summary": "{{ $value }} of the requests of version {{ $labels.version }} failed",
    },
    # A 99th percentile over a second for five minutes: far above what an ONNX model takes on a CPU.
    "p99-latency": {
        "expr": "p99_latency(5m)",
        "op": ">",
        "threshold": 1.0,
        "for": "5m",
        "severity": "warning",
        "summary": "p99 latency of version {{ $labels.version }} is {{ $value }}s",
    },
    # Three replacements in ten minutes: the restart backoff is already growing; no wait needed.
    "crash-loop": {
        "expr": "restarts(10m)",
        "op": ">=",
        "threshold": 3,
        "for": "0s",
        "severity": "critical",
        "summary": "replicas of version {{ $labels.version }} restarted {{ $value }} times",
    },
    # PSI over 0.2 is the usual mark of a significant shift; five minutes rules out a burst of odd rows.
    "drift": {
        "expr": "drift_psi",
        "op": ">",
        "threshold": 0.2,
        "for": "5m",
        "severity": "warning",
        "summary": "inputs of version {{ $labels.version }} drifted: PSI {{ $value }}",
    },
}
