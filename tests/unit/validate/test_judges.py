"""Each gate as a pure function of measured numbers: a planted accuracy drop, drift and label disagreement
fail regression; latency and throughput against limits and the baseline; errors and memory growth in a soak;
and the verdict over all gates."""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.validate import performance, regression, stability
from conveyor.validate.gates import PerformanceGate, RegressionGate, StabilityGate
from conveyor.validate.verdict import Check, GateResult, passed, summary

LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1])
PROBA = np.eye(3, dtype=np.float32)[LABELS]


def outputs(labels: np.ndarray[Any, Any], proba: np.ndarray[Any, Any] | None = None) -> dict[str, Any]:
    return {"label": labels.astype(np.int64), "probabilities": PROBA if proba is None else proba}


def failed(result: GateResult) -> list[str]:
    return [c.name for c in result.checks if not c.passed]


def test_a_check_holds_its_bound_and_a_missing_or_nan_value_never_does() -> None:
    assert Check("p99", 10.0, 20.0).passed and not Check("p99", 30.0, 20.0).passed
    assert Check("throughput", 30.0, 20.0, op=">=").passed
    assert not Check("x", None, 1.0).passed and not Check("x", float("nan"), 1.0).passed
    assert Check("p99", 41.25, 20, unit="ms", note="maxP99Ms").describe() == "p99 41.25 ms > 20 ms (maxP99Ms)"
    assert Check("throughput", 10, 20, op=">=").describe() == "throughput 10 < 20"


def test_the_same_answers_pass_regression() -> None:
    base = outputs(LABELS)
    gate = RegressionGate(min_accuracy=0.9, max_drift=0.0, min_agreement=1.0)
    result = regression.judge(gate, outputs(LABELS), labels=LABELS, baseline=base, expected=base)
    assert result.passed, result.problems()
    assert result.numbers["quality"]["accuracy"] == 1.0
    assert result.numbers["drift_rows_vs_baseline"]["rows"] == len(LABELS)


def test_a_planted_accuracy_drop_fails_against_the_labels_and_the_baseline() -> None:
    worse = LABELS.copy()
    worse[:4] = (worse[:4] + 1) % 3
    result = regression.judge(
        RegressionGate(min_accuracy=0.9), outputs(worse), labels=LABELS, baseline=outputs(LABELS)
    )
    assert failed(result) == ["accuracy", "accuracy drop"]
    assert result.checks[2].value == 0.5 and result.checks[2].note == "vs baseline"
    assert "accuracy 0.5 < 0.9" in summary([result])


def test_drift_and_label_agreement_against_the_expected_outputs() -> None:
    moved = PROBA.copy()
    moved[0] = [0.6, 0.4, 0.0]
    flipped = LABELS.copy()
    flipped[0] = 1
    gate = RegressionGate(max_drift=0.1, min_agreement=0.95)
    result = regression.judge(gate, outputs(flipped, moved), expected=outputs(LABELS))
    assert failed(result) == ["max |drift| vs expected", "labels agree with expected"]
    hist = result.numbers["drift_rows_vs_expected"]
    assert sum(hist["counts"]) == len(LABELS) and hist["counts"][-1] == 1  # one row moved by 0.4


def test_non_finite_outputs_fail_and_a_missing_output_is_an_error() -> None:
    broken = PROBA.copy()
    broken[2, 1] = np.nan
    assert failed(regression.judge(RegressionGate(), outputs(LABELS, broken))) == ["non-finite outputs"]
    result = regression.judge(RegressionGate(), {"label": LABELS}, expected=outputs(LABELS))
    assert not result.passed and "no output 'probabilities'" in str(result.error)


def test_a_regressor_is_judged_by_rmse() -> None:
    truth = np.array([1.0, 2.0, 3.0])
    result = regression.judge(
        RegressionGate(max_rmse=0.5, max_accuracy_drop=0.1),
        {"y": np.array([[1.0], [2.0], [5.0]], np.float32)},
        labels=truth,
        baseline={"y": truth.reshape(-1, 1).astype(np.float32)},
    )
    assert failed(result) == ["rmse", "RMSE increase"]


def load_numbers(p50: float, p99: float, rps: float, errors: int = 0) -> dict[str, Any]:
    return {"p50_ms": p50, "p99_ms": p99, "throughput": rps, "errors": errors}


def test_performance_against_absolute_limits() -> None:
    gate = PerformanceGate(max_p50_ms=5, max_p99_ms=20, min_throughput=100)
    assert performance.judge(gate, load_numbers(2, 10, 500), None).passed
    result = performance.judge(gate, load_numbers(6, 30, 50, errors=2), None)
    assert failed(result) == ["errors", "p50", "p99", "throughput"]


def test_a_planted_delay_fails_against_the_baseline() -> None:
    base = load_numbers(2, 8, 400)
    gate = PerformanceGate()  # defaults: p50 x2, p99 x3, throughput x0.5 of the baseline
    assert performance.judge(gate, load_numbers(3, 12, 300), base).passed
    result = performance.judge(gate, load_numbers(25, 40, 40), base)
    assert failed(result) == ["p50", "p99", "throughput"]
    assert result.checks[1].limit == 4 and result.checks[1].baseline == 2  # [0]: errors


def test_latency_histograms_share_bins() -> None:
    h = performance.latency_histograms([1.0, 2.0, 3.0], [10.0, 20.0])
    assert len(h["edges"]) == performance.BINS + 1
    assert sum(h["candidate"]) == 3 and sum(h["baseline"]) == 2
    assert performance.latency_histograms([], None)["edges"] == []


MIB = 1024 * 1024


def test_a_soak_without_errors_or_growth_passes_and_a_leak_fails() -> None:
    steady = [(t * 0.25, 200 * MIB + (t % 2) * MIB) for t in range(20)]
    assert stability.judge(StabilityGate(), {"errors": 0}, steady).passed
    leaking = [(t * 0.25, 200 * MIB + t * 8 * MIB) for t in range(20)]
    result = stability.judge(StabilityGate(), {"errors": 3}, leaking)
    assert failed(result) == ["errors", "resident memory growth"]
    assert result.checks[1].value == 152 and result.numbers["rss_peak_mb"] == 352


def test_a_soak_whose_memory_cannot_be_read_fails_saying_so() -> None:
    result = stability.judge(StabilityGate(), {"errors": 0}, [])
    assert not result.passed and "could not be read" in str(result.error)


def test_memory_samples_are_thinned_for_the_report_keeping_the_last() -> None:
    samples = [(float(t), t) for t in range(1000)]
    kept = stability.judge(StabilityGate(), {"errors": 0}, samples).numbers["rss"]
    assert len(kept) <= stability.MAX_POINTS + 1 and kept[-1] == [999.0, 999]


def test_the_verdict_needs_every_gate_and_at_least_one() -> None:
    ok, bad = GateResult("regression"), GateResult("stability", error="no memory")
    assert passed([ok]) and not passed([ok, bad]) and not passed([])
    assert summary([ok, bad]) == "failed: stability: no memory"
    assert ok.to_dict()["passed"] and bad.to_dict()["problems"] == ["no memory"]
