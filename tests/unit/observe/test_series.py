"""The dashboard's chart data: per version request rate, error ratio and latency quantiles from the gateway's
counters in a StackHistory, and the latest drift per feature."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.observe.history import Sample, StackHistory
from conveyor.observe.series import deployment_series, drift, is_error_code

GATEWAY = {"model": "clf", "component": "gateway", "instance": "gateway", "protocol": "rest"}
BOUNDS = ("0.001", "0.01", "0.1", "+Inf")


def _scrape(
    requests: dict[tuple[str, str], float],
    latencies: dict[str, tuple[float, float, float, float]],
    component: dict[str, str] = GATEWAY,
) -> list[Sample]:
    """Counters as a process exposes them: requests by (version, code), cumulative bucket counts."""
    out: list[Sample] = [
        ("conveyor_requests_total", {**component, "version": v, "code": c}, n)
        for (v, c), n in requests.items()
    ]
    for version, counts in latencies.items():
        for le, n in zip(BOUNDS, counts, strict=True):
            labels = {**component, "version": version, "le": le}
            out.append(("conveyor_request_duration_seconds_bucket", labels, n))
    return out


def _history() -> StackHistory:
    """Version 1 takes 10 requests/s (1 in 10 a 500, 1 in 20 a 429) from t=0; version 2 starts at t=6 with
    2/s; the replicas count the same requests again (ignored: only the gateway counts what clients see)."""
    h = StackHistory()
    for t in range(0, 21, 2):
        v2 = max(t - 6, 0)
        requests = {("1", "200"): 8.5 * t, ("1", "500"): 1.0 * t, ("1", "429"): 0.5 * t}
        latencies = {"1": (0.0, 5.0 * t, 10.0 * t, 10.0 * t)}
        if t >= 6:
            requests[("2", "200")] = 2.0 * v2
            latencies["2"] = (2.0 * v2, 2.0 * v2, 2.0 * v2, 2.0 * v2)
        replica = {"model": "clf", "component": "replica", "instance": "r1", "protocol": "rest"}
        h.add(t, [*_scrape(requests, latencies), *_scrape({("1", "500"): 100.0 * t}, {}, replica)])
    return h


def test_rate_error_ratio_and_quantiles_per_version_from_the_gateway_only() -> None:
    h = _history()
    match = {"model": "clf", "component": "gateway"}
    out = deployment_series(h, match, since_s=10, step_s=2, window_s=4)
    assert out["now"] == 20
    assert out["t"] == [10, 12, 14, 16, 18, 20]
    v1, v2 = out["versions"]["1"], out["versions"]["2"]
    assert v1["rate"] == pytest.approx([10.0] * 6)
    assert v1["error_ratio"] == pytest.approx([0.1] * 6)  # the 429s are backpressure, not errors
    assert v1["p50"] == pytest.approx([0.01] * 6)
    assert v1["p99"] == pytest.approx([0.01 + 0.09 * 0.98] * 6)  # 98% into the (0.01, 0.1] bucket
    assert v2["rate"] == pytest.approx([2.0] * 6)
    assert v2["error_ratio"] == [0.0] * 6
    assert v2["p99"] == pytest.approx([0.001 * 0.99] * 6)


def test_a_version_that_appears_later_has_none_before_it_and_since_and_step_thin_the_points() -> None:
    h = _history()
    out = deployment_series(h, {"model": "clf", "component": "gateway"}, since_s=20, step_s=4, window_s=2)
    assert out["t"] == [0, 4, 8, 12, 16, 20]
    v2 = out["versions"]["2"]
    assert v2["rate"][:2] == [None, None]  # no series yet at t=0 and t=4
    assert v2["rate"][2] == pytest.approx(2.0)  # t=8: it appeared at 6, counted whole from then
    assert out["versions"]["1"]["rate"][0] is None  # the first point is the baseline: no rate
    assert list(out["versions"]) == ["1", "2"]


def test_a_quiet_version_has_rate_zero_and_no_ratio_or_latency() -> None:
    h = StackHistory()
    for t in (0, 2, 4):
        h.add(t, _scrape({("3", "200"): 5.0}, {"3": (5.0, 5.0, 5.0, 5.0)}))
    out = deployment_series(h, {"model": "clf"}, since_s=60, step_s=2, window_s=2)
    assert out["versions"]["3"] == {
        "rate": [None, 0.0, 0.0],
        "error_ratio": [None, None, None],
        "p50": [None, None, None],
        "p99": [None, None, None],
    }


def test_another_model_or_an_empty_history_gives_no_versions() -> None:
    assert (
        deployment_series(_history(), {"model": "other"}, since_s=60, step_s=2, window_s=4)["versions"] == {}
    )
    empty = deployment_series(StackHistory(), {"model": "clf"}, since_s=60, step_s=2, window_s=4)
    assert empty == {"now": None, "t": [], "versions": {}}


def test_a_long_window_is_capped_in_points() -> None:
    h = StackHistory()
    for t in range(0, 2001):
        h.add(t, _scrape({("1", "200"): float(t)}, {}))
    out = deployment_series(h, {"model": "clf"}, since_s=900, step_s=1, window_s=10)
    assert 400 <= len(out["t"]) <= 600
    assert out["versions"]["1"]["rate"][-1] == pytest.approx(1.0)


def test_drift_keeps_the_worst_replica_per_version_and_feature_of_the_models_asked() -> None:
    h = StackHistory()
    gauges: list[Sample] = [
        ("conveyor_drift_psi", {"model": "iris", "version": "2", "feature": "x0", "instance": "a"}, 0.05),
        ("conveyor_drift_psi", {"model": "iris", "version": "2", "feature": "x0", "instance": "b"}, 0.4),
        (
            "conveyor_drift_mean_shift",
            {"model": "iris", "version": "2", "feature": "x0", "instance": "a"},
            2.1,
        ),
        ("conveyor_drift_psi", {"model": "other", "version": "1", "feature": "x0", "instance": "c"}, 9.0),
    ]
    h.add(0, gauges)
    assert drift(h, {"iris", "clf"}) == {"2": {"x0": {"psi": 0.4, "mean_shift": 2.1}}}
    assert drift(h, {"nothing"}) == {}


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("200", False),
        ("404", False),
        ("429", False),
        ("500", True),
        ("503", True),
        ("OK", False),
        ("INVALID_ARGUMENT", False),
        ("RESOURCE_EXHAUSTED", False),
        ("INTERNAL", True),
        ("UNAVAILABLE", True),
    ],
)
def test_server_errors_are_5xx_and_the_grpc_codes_of_a_failed_server(code: str, error: bool) -> None:
    assert is_error_code(code) is error


class CountingHistory(StackHistory):
    """A StackHistory that counts its scans (each ``increase`` reads the whole window)."""

    scans = 0

    def increase(self, *args: Any, **kwargs: Any) -> dict[tuple[str, ...], float]:
        self.scans += 1
        return super().increase(*args, **kwargs)


def test_a_chart_asked_again_computes_only_the_points_that_are_new() -> None:
    h = CountingHistory()
    for t in range(0, 41, 2):
        h.add(t, _scrape({("1", "200"): 3.0 * t}, {"1": (0.0, 3.0 * t, 3.0 * t, 3.0 * t)}))
    first = deployment_series(h, {"model": "clf"}, since_s=600, step_s=2, window_s=4)
    scans = h.scans
    assert deployment_series(h, {"model": "clf"}, since_s=600, step_s=2, window_s=4) == first
    assert h.scans - scans == 2  # only the latest point again: another scrape may share its time
    h.add(42, _scrape({("1", "200"): 3.0 * 42}, {"1": (0.0, 3.0 * 42, 3.0 * 42, 3.0 * 42)}))
    scans = h.scans
    again = deployment_series(h, {"model": "clf"}, since_s=600, step_s=2, window_s=4)
    assert h.scans - scans == 4  # the point at 40 (now final) and the new one at 42
    assert again["t"] == [*first["t"], 42]
    assert again["versions"]["1"]["rate"] == [*first["versions"]["1"]["rate"], pytest.approx(3.0)]
