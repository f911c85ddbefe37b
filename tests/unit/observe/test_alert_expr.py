"""The alert expression language: what it reads, what it refuses (and says why), its PromQL, and its values
from a StackHistory filled with scraped samples."""

from __future__ import annotations

import re

import pytest

from conveyor.observe.alert_expr import ERROR_CODES_RE, INDICATORS, parse
from conveyor.observe.history import StackHistory
from conveyor.observe.series import is_error_code


def test_indicators_with_and_without_arguments() -> None:
    e = parse(" error_rate( 5m ) ")
    assert (e.indicator, e.window, e.window_s) == ("error_rate", "5m", 300.0)
    p = parse("p99_latency(30s)")
    assert (p.indicator, p.quantile, p.window_s) == ("latency_quantile", 0.99, 30.0)
    assert parse("p999_latency(1m)").quantile == 0.999
    assert parse("latency_quantile(0.5, 15m)").quantile == 0.5
    assert parse("drift_psi").window is None and not parse("held_requests").per_version


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty expression"),
        ("eror_rate(5m)", "unknown indicator 'eror_rate'; did you mean 'error_rate'?"),
        ("error_rate", "error_rate takes (window), e.g. error_rate(5m), got 0 argument(s)"),
        ("drift_psi(5m)", "drift_psi takes no arguments"),
        ("error_rate(1.5m)", "invalid window '1.5m': a whole number and a unit"),
        ("error_rate(0s)", "window '0s' must be longer than 0"),
        ("error_rate(1h)", "longer than the 15m of metrics the control plane keeps"),
        ("latency_quantile(1.5, 5m)", "quantile 1.5 must be between 0 and 1"),
        ("error_rate(5m) > 0.1", "cannot read"),
    ],
)
def test_a_bad_expression_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(text)


def test_promql_of_each_indicator_reads_the_gateway_counts_of_the_deployment() -> None:
    assert parse("request_rate(1m)").promql("iris") == (
        'sum by (model, version) (rate(conveyor_requests_total{component="gateway",model="iris"}[1m]))'
    )
    errors = 'conveyor_requests_total{component="gateway",model="iris",code=~"' + ERROR_CODES_RE + '"}'
    total = 'sum by (model, version) (rate(conveyor_requests_total{component="gateway",model="iris"}[5m]))'
    assert parse("error_rate(5m)").promql("iris") == (
        f"(sum by (model, version) (rate({errors}[5m])) or {total} * 0) / {total}"
    )
    assert parse("p99_latency(5m)").promql("iris") == (
        "histogram_quantile(0.99, sum by (model, version, le) (rate(conveyor_request_duration_seconds_bucket"
        '{component="gateway",model="iris"}[5m])))'
    )
    assert parse("restarts(10m)").promql("iris") == (
        'sum by (deployment, version) (increase(conveyor_replica_restarts_total{deployment="iris"}[10m]))'
    )
    assert parse("drift_psi").promql("iris") == 'max by (model, version) (conveyor_drift_psi{model="iris"})'
    assert parse("drift_mean_shift").promql("a") == (
        'max by (model, version) (abs(conveyor_drift_mean_shift{model="a"}))'
    )
    assert set(INDICATORS) == {
        "error_rate",
        "latency_quantile",
        "request_rate",
        "restarts",
        "drift_psi",
        "drift_mean_shift",
        "queue_depth",
        "in_flight",
        "held_requests",
        "requests",
        "shadow_requests",
        "shadow_error_rate",
        "shadow_latency_quantile",
        "comparisons",
        "agreement",
        "label_agreement",
    }


@pytest.mark.parametrize(
    "code",
    ["200", "400", "429", "500", "503", "504", "OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "INTERNAL"],
)
def test_the_promql_error_codes_are_the_ones_conveyor_counts(code: str) -> None:
    assert bool(re.fullmatch(ERROR_CODES_RE, code)) == is_error_code(code)


def _gateway(version: str, code: str, n: float) -> tuple[str, dict[str, str], float]:
    labels = {"component": "gateway", "instance": "gateway", "model": "iris", "version": version}
    return ("conveyor_requests_total", {**labels, "protocol": "rest", "code": code}, n)


def test_values_per_version_from_the_history() -> None:
    h = StackHistory()
    replica = {
        "component": "replica",
        "instance": "r1",
        "model": "iris",
        "version": "2",
        "protocol": "channel",
    }
    h.add(0, [_gateway("1", "200", 0), _gateway("2", "200", 0), _gateway("2", "500", 0)])
    h.add(
        10,
        [
            _gateway("1", "200", 50),
            _gateway("2", "200", 30),
            _gateway("2", "500", 10),
            (
                "conveyor_requests_total",
                {**replica, "code": "500"},
                99,
            ),  # the replica's count: not the client's
            ("conveyor_drift_psi", {"model": "iris", "version": "2", "feature": "a", "instance": "r1"}, 0.1),
            ("conveyor_drift_psi", {"model": "iris", "version": "2", "feature": "b", "instance": "r1"}, 0.4),
            ("conveyor_drift_mean_shift", {"model": "iris", "version": "2", "feature": "a"}, -2.5),
            ("conveyor_drift_mean_shift", {"model": "iris", "version": "2", "feature": "b"}, 1.0),
            ("conveyor_drift_psi", {"model": "other", "version": "1", "feature": "a"}, 9.0),
        ],
    )
    assert parse("error_rate(1m)").values(h, "iris") == {"1": 0.0, "2": 0.25}
    assert parse("request_rate(1m)").values(h, "iris") == {"1": 5.0, "2": 4.0}
    assert parse("drift_psi").values(h, "iris") == {"2": 0.4}
    assert parse("drift_mean_shift").values(h, "iris") == {"2": 2.5}
    assert parse("error_rate(1m)").values(h, "nothing") == {}
