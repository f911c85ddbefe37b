"""The performance gate: latency and throughput of real requests at a concurrency, against absolute limits
and against the baseline's under the same load. Pure: numbers in, checks out."""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.validate.gates import PerformanceGate
from conveyor.validate.verdict import Check, GateResult

BINS = 30


def judge(gate: PerformanceGate, candidate: dict[str, Any], baseline: dict[str, Any] | None) -> GateResult:
    """Checks of ``candidate``'s load numbers (``load.Load.numbers``), and of them against ``baseline``'s."""
    result = GateResult("performance", numbers={"candidate": candidate, "baseline": baseline})
    base = baseline or {}
    result.checks.append(Check("errors", candidate["errors"], gate.max_errors, unit="requests"))
    for key, limit, name, op, unit, field in (
        ("p50_ms", gate.max_p50_ms, "p50", "<=", "ms", "maxP50Ms"),
        ("p99_ms", gate.max_p99_ms, "p99", "<=", "ms", "maxP99Ms"),
        ("throughput", gate.min_throughput, "throughput", ">=", "req/s", "minThroughput"),
    ):
        if limit is not None:
            check = Check(name, candidate[key], limit, op=op, unit=unit, baseline=base.get(key), note=field)  # type: ignore[arg-type]
            result.checks.append(check)
    if baseline is None:
        return result
    for key, bound, name in (
        ("p50_ms", gate.max_p50_increase, "p50"),
        ("p99_ms", gate.max_p99_increase, "p99"),
    ):
        if bound is not None and baseline.get(key):
            limit = baseline[key] * (1 + bound)
            note = f"baseline {baseline[key]:.3g} ms x {1 + bound:g}"
            result.checks.append(
                Check(name, candidate[key], limit, unit="ms", baseline=baseline[key], note=note)
            )
    if gate.max_throughput_drop is not None and baseline.get("throughput"):
        limit = baseline["throughput"] * (1 - gate.max_throughput_drop)
        note = f"baseline {baseline['throughput']:.4g} req/s x {1 - gate.max_throughput_drop:g}"
        result.checks.append(
            Check(
                "throughput",
                candidate["throughput"],
                limit,
                op=">=",
                unit="req/s",
                baseline=baseline["throughput"],
                note=note,
            )
        )
    return result


def latency_histograms(candidate_ms: list[float], baseline_ms: list[float] | None) -> dict[str, Any]:
    """Both latency distributions on the same log-spaced bins (ms), for the report."""
    every = np.asarray(candidate_ms + (baseline_ms or []), dtype=np.float64)
    every = every[every > 0]
    if every.size == 0:
        return {"edges": [], "candidate": [], "baseline": None}
    low, high = float(np.percentile(every, 0.1)), float(every.max())
    edges = np.geomspace(max(low, 1e-3), max(high, low * 1.01, 1e-3 * 1.01), BINS + 1)

    def counts(values: list[float]) -> list[int]:
        return np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0].tolist()  # type: ignore[no-any-return]

    return {
        "edges": edges.tolist(),
        "candidate": counts(candidate_ms),
        "baseline": None if baseline_ms is None else counts(baseline_ms),
    }
