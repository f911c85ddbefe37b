"""The drift monitor: PSI and mean shift on known distributions, sampling, the bounded window, export."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.formats.signature import Signature, TensorSpec
from conveyor.observe.drift import DriftMonitor, collector, mean_shift, psi, status
from conveyor.observe.metrics import REGISTRY
from conveyor.observe.reference import compute_reference

SIGNATURE = Signature(inputs=(TensorSpec("x", "FP32", (-1, 2)),), outputs=())


def reference(rows: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Feature 0 ~ N(10, 2), feature 1 ~ N(-3, 0.5)."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(10, 2, rows), rng.normal(-3, 0.5, rows)])
    return compute_reference(x, SIGNATURE, source="sample")


def serving(rows: int, shift_sd: float = 0.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(10 + 2 * shift_sd, 2, rows), rng.normal(-3 + 0.5 * shift_sd, 0.5, rows)])
    return x.astype(np.float32)


def monitor(sample_every: int = 1, window: int = 2000) -> DriftMonitor:
    return DriftMonitor("m", "1", reference(), sample_every=sample_every, window=window)


def by_feature(m: DriftMonitor) -> dict[str, tuple[float, float]]:
    return {d.feature: (d.psi, d.mean_shift) for d in m.drift()}


def test_psi_of_known_proportions() -> None:
    expected = np.array([0.5, 0.5])
    actual = np.array([0.25, 0.75])
    assert psi(expected, actual) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert psi(expected, expected) == 0.0
    # an empty bin counts as epsilon: large, but finite
    assert 0.25 < psi(np.array([0.5, 0.5]), np.array([0.0, 1.0])) < math.inf


def test_mean_shift_is_in_reference_standard_deviations() -> None:
    assert mean_shift(14.0, 10.0, 2.0) == 2.0
    assert mean_shift(6.0, 10.0, 2.0) == -2.0
    assert mean_shift(3.0, 3.0, 0.0) == 0.0
    assert mean_shift(4.0, 3.0, 0.0) == math.inf


def test_status_thresholds() -> None:
    assert [status(v) for v in (0.0, 0.099, 0.1, 0.249, 0.25, 3.0)] == [
        "ok",
        "ok",
        "warn",
        "warn",
        "drift",
        "drift",
    ]


def test_inputs_shifted_two_standard_deviations_drift_and_unshifted_do_not() -> None:
    same, shifted = monitor(), monitor()
    for i in range(20):
        same.observe({"x": serving(100, seed=i)})
        shifted.observe({"x": serving(100, shift_sd=2.0, seed=i)})
    ok = by_feature(same)
    drifted = by_feature(shifted)
    assert set(ok) == set(drifted) == {"x[0]", "x[1]"}
    for feature in ok:
        assert ok[feature][0] < 0.1 and abs(ok[feature][1]) < 0.2
        assert drifted[feature][0] > 0.25 and drifted[feature][1] == pytest.approx(2.0, abs=0.2)


def test_every_nth_request_is_sampled() -> None:
    m = monitor(sample_every=3)
    for i in range(9):
        m.observe({"x": serving(1, seed=i)})
    assert m.sampled == 3  # the 1st, 4th and 7th


def test_window_keeps_only_the_latest_rows() -> None:
    m = monitor(window=300)
    for i in range(10):
        m.observe({"x": serving(100, shift_sd=2.0, seed=i)})
    assert by_feature(m)["x[0]"][0] > 0.25
    for i in range(3):  # 300 unshifted rows replace every shifted one, whatever the ring's position
        m.observe({"x": serving(100, seed=100 + i)})
    rows = {d.rows for d in m.drift()}
    assert rows == {300}
    assert by_feature(m)["x[0]"][1] == pytest.approx(0.0, abs=0.3)


def test_a_request_larger_than_the_window_fills_it_with_its_last_rows() -> None:
    m = monitor(window=250)
    m.observe({"x": np.vstack([serving(1000, shift_sd=3.0), serving(250)])})
    assert by_feature(m)["x[1]"][1] == pytest.approx(0.0, abs=0.3)


def test_nothing_is_reported_before_enough_rows() -> None:
    m = monitor()
    m.observe({"x": serving(150)})
    assert m.drift() == []
    m.observe({"x": serving(100)})
    assert len(m.drift()) == 2


def test_a_request_of_another_shape_is_skipped() -> None:
    m = monitor()
    m.observe({"x": np.zeros((5, 1), dtype=np.float32)})
    assert (m.sampled, m.skipped) == (0, 1)


def test_drift_is_exported_on_the_registry_while_the_monitor_lives() -> None:
    m = DriftMonitor("exported", "7", reference(), sample_every=1, window=500)
    m.observe({"x": serving(500, shift_sd=2.0)})
    collector().add(m)
    try:
        samples = {
            (s.name, s.labels["feature"]): s.value
            for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
            for s in family.samples
            if s.labels.get("model") == "exported"
        }
    finally:
        collector().remove(m)
    assert samples[("conveyor_drift_psi", "x[0]")] > 0.25
    assert samples[("conveyor_drift_mean_shift", "x[1]")] == pytest.approx(2.0, abs=0.3)
    after = generate_latest(REGISTRY).decode()
    assert 'model="exported"' not in after
