"""The HTML report: one self-contained file (no script, nothing fetched), the verdict, every check, and the
four charts drawn as inline SVG; a chart with nothing measured says so instead."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from conveyor.registry import VersionInfo
from conveyor.validate import performance, stability
from conveyor.validate.gates import Gates, PerformanceGate, StabilityGate
from conveyor.validate.html import render, write_report
from conveyor.validate.validator import ValidationResult
from conveyor.validate.verdict import Check, GateResult

MIB = 1024 * 1024


def version(n: int) -> VersionInfo:
    return VersionInfo("clf", n, "0" * 64, 10, "onnx", {}, None, {}, [], None, datetime.now(UTC), None)


def result(with_baseline: bool = True) -> ValidationResult:
    drift = {"edges": [0.0, 0.1, 0.2], "counts": [5, 3], "rows": 8}
    reg = GateResult(
        "regression",
        [Check("accuracy drop", 0.25, 0.01, note="vs baseline")],
        {
            "quality": {"accuracy": 0.7},
            "baseline_quality": {"accuracy": 0.95},
            "drift_rows_vs_baseline": drift,
        },
    )
    base = {"p50_ms": 2.0, "p99_ms": 8.0, "throughput": 400.0, "errors": 0} if with_baseline else None
    perf = performance.judge(
        PerformanceGate(), {"p50_ms": 3, "p99_ms": 9, "throughput": 350, "errors": 0}, base
    )
    soak = stability.judge(StabilityGate(), {"errors": 0}, [(t / 4, 100 * MIB + t * MIB) for t in range(12)])
    latency = performance.latency_histograms([1.0, 2.0, 2.5], [1.5, 2.0] if with_baseline else None)
    return ValidationResult(
        version(2),
        version(1) if with_baseline else None,
        [reg, perf, soak],
        {"rows": 8, "source": "x.npy", "labels": "y.npy", "expected": None},
        Gates(),
        "http://127.0.0.1:1234",
        latency=latency,
    )


def test_the_report_is_self_contained_with_the_verdict_checks_and_four_charts(tmp_path: Path) -> None:
    path = write_report(result(), tmp_path / "reports" / "r.html")
    html = path.read_text()
    assert "<script" not in html and not re.search(r"(src|href)=\"https?:", html)
    assert "FAILED" in html and "accuracy drop" in html and "clf:1" in html
    for chart in ("latency", "drift", "compare", "memory"):
        assert f'data-chart="{chart}"' in html, chart
    assert html.count('class="bar" data-series="baseline"') > 0
    assert "maxRssGrowthMb: 64.0" in html  # the gates in effect


def test_without_a_baseline_the_drift_chart_says_it_was_not_measured() -> None:
    res = result(with_baseline=False)
    res.gates[0].numbers.pop("drift_rows_vs_baseline")
    html = render(res)
    assert 'data-chart="drift"' not in html and "not measured in this run" in html
    assert 'data-chart="latency"' in html and 'data-chart="memory"' in html
