"""The indicators a rollout's analysis reads (comparisons, mirrored requests, counts), built over any window
in seconds, and any documented metric by name: their PromQL and their values from a StackHistory."""

from __future__ import annotations

import re

import pytest

from conveyor.observe.alert_expr import ERROR_CODES_RE, build, format_window, metric_expr, parse
from conveyor.observe.alert_expr import validate_metric_expr as validate
from conveyor.observe.history import Sample, StackHistory

GW = {"component": "gateway", "instance": "gw", "model": "iris"}


def _c(result: str, n: float, version: str = "2") -> Sample:
    return ("conveyor_comparisons_total", {**GW, "version": version, "result": result}, n)


def _shadow(code: str, n: float, version: str = "2") -> Sample:
    return ("conveyor_shadow_requests_total", {**GW, "version": version, "code": code}, n)


def _shadow_bucket(le: str, n: float) -> Sample:
    return ("conveyor_shadow_request_duration_seconds_bucket", {**GW, "version": "2", "le": le}, n)


def _history(*end: Sample) -> StackHistory:
    h = StackHistory()
    h.add(0, [(name, labels, 0.0) for name, labels, _ in end])
    h.add(10, list(end))
    return h


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30, "30s"), (1.5, "1500ms"), (300, "5m"), (90, "90s"), (0.0001, "1ms"), (3600, "60m")],
)
def test_a_window_in_seconds_is_written_as_promql_reads_it(seconds: float, text: str) -> None:
    assert format_window(seconds) == text


def test_build_gives_an_indicator_any_window_and_refuses_what_it_does_not_take() -> None:
    e = build("error_rate", window_s=1.5)
    assert (e.text, e.window, e.window_s) == ("error_rate(1500ms)", "1500ms", 1.5)
    assert build("latency_quantile", window_s=45, quantile=0.99).text == "latency_quantile(0.99, 45s)"
    assert build("drift_psi").text == "drift_psi"
    with pytest.raises(ValueError, match=re.escape("error_rate takes (window), e.g. error_rate(5m)")):
        build("error_rate")
    with pytest.raises(ValueError, match="unknown indicator 'nope'"):
        build("nope", window_s=1)
    with pytest.raises(ValueError, match="must be longer than 0"):
        build("requests", window_s=0)


def test_the_comparison_and_shadow_indicators_in_promql() -> None:
    compared = 'result=~"agree|values_differ|labels_differ"'

    def rate(results: str) -> str:
        return f'sum by (model, version) (rate(conveyor_comparisons_total{{model="iris",{results}}}[1m]))'

    agree, labels_agree, all_ = rate('result=~"agree"'), rate('result=~"agree|values_differ"'), rate(compared)
    assert parse("agreement(1m)").promql("iris") == f"({agree} or {all_} * 0) / {all_}"
    assert parse("label_agreement(1m)").promql("iris") == f"({labels_agree} or {all_} * 0) / {all_}"
    assert parse("comparisons(1m)").promql("iris") == (
        f'sum by (model, version) (increase(conveyor_comparisons_total{{model="iris",{compared}}}[1m]))'
    )
    assert parse("requests(30s)").promql("iris") == (
        'sum by (model, version) (increase(conveyor_requests_total{component="gateway",model="iris"}[30s]))'
    )
    assert parse("shadow_requests(30s)").promql("iris") == (
        'sum by (model, version) (increase(conveyor_shadow_requests_total{model="iris"}[30s]))'
    )
    errors = f'conveyor_shadow_requests_total{{model="iris",code=~"{ERROR_CODES_RE}"}}'
    total = 'sum by (model, version) (rate(conveyor_shadow_requests_total{model="iris"}[30s]))'
    assert parse("shadow_error_rate(30s)").promql("iris") == (
        f"(sum by (model, version) (rate({errors}[30s])) or {total} * 0) / {total}"
    )
    p99 = parse("shadow_p99_latency(30s)")
    assert (p99.indicator, p99.quantile) == ("shadow_latency_quantile", 0.99)
    assert p99.promql("iris") == (
        "histogram_quantile(0.99, sum by (model, version, le) (rate("
        'conveyor_shadow_request_duration_seconds_bucket{model="iris"}[30s])))'
    )


def test_comparison_and_shadow_values_per_version_from_the_history() -> None:
    h = _history(
        _c("agree", 90),
        _c("values_differ", 6),
        _c("labels_differ", 4),
        _c("failed", 50),  # no second answer: not compared
        _c("agree", 10, version="3"),
        _shadow("200", 45),
        _shadow("503", 5),
        _shadow_bucket("0.01", 0),
        _shadow_bucket("0.025", 50),
        _shadow_bucket("+Inf", 50),
        ("conveyor_requests_total", {**GW, "version": "1", "protocol": "rest", "code": "200"}, 70),
    )
    assert parse("comparisons(1m)").values(h, "iris") == {"2": 100, "3": 10}
    assert parse("agreement(1m)").values(h, "iris") == {"2": 0.9, "3": 1.0}
    assert parse("label_agreement(1m)").values(h, "iris") == {"2": 0.96, "3": 1.0}
    assert parse("shadow_requests(1m)").values(h, "iris") == {"2": 50}
    assert parse("shadow_error_rate(1m)").values(h, "iris") == {"2": 0.1}
    assert parse("shadow_p50_latency(1m)").values(h, "iris") == {"2": pytest.approx(0.0175)}
    assert parse("requests(1m)").values(h, "iris") == {"1": 70}
    assert parse("agreement(1m)").values(h, "other") == {}


def test_a_metric_by_name_per_version_in_promql() -> None:
    assert metric_expr("conveyor_requests_total", window_s=30).promql("iris") == (
        'sum by (model, version) (rate(conveyor_requests_total{component="gateway",model="iris"}[30s]))'
    )
    assert metric_expr("conveyor_inference_duration_seconds", window_s=30, quantile=0.9).promql("iris") == (
        "histogram_quantile(0.9, sum by (model, version, le) (rate("
        'conveyor_inference_duration_seconds_bucket{model="iris"}[30s])))'
    )
    assert metric_expr("conveyor_queue_depth", window_s=1.5).promql("iris") == (
        'sum by (model, version) (avg_over_time(conveyor_queue_depth{model="iris"}[1500ms]))'
    )
    assert metric_expr("conveyor_replica_restarts_total", window_s=60).promql("iris") == (
        'sum by (deployment, version) (rate(conveyor_replica_restarts_total{deployment="iris"}[1m]))'
    )
    own = metric_expr(" p95_latency(1m) ", window_s=30)
    assert (own.indicator, own.window_s, own.metric) == ("latency_quantile", 60.0, None)


def test_a_metric_by_name_reads_the_history_per_version() -> None:
    h = StackHistory()
    replica = {"component": "replica", "model": "iris", "version": "2"}
    h.add(
        0, [("conveyor_requests_total", {**replica, "code": "200"}, 0), ("conveyor_queue_depth", replica, 1)]
    )
    h.add(
        5, [("conveyor_queue_depth", {**replica, "instance": "a"}, 2), ("conveyor_queue_depth", replica, 2)]
    )
    h.add(
        10,
        [("conveyor_requests_total", {**replica, "code": "200"}, 50), ("conveyor_queue_depth", replica, 6)],
    )
    # The replica's own count of requests is not the client's: only the gateway's are read.
    assert metric_expr("conveyor_requests_total", window_s=10).values(h, "iris") == {}
    assert metric_expr("conveyor_queue_depth", window_s=10).values(h, "iris") == {"2": 5.0}  # (4 + 6) / 2
    assert metric_expr("conveyor_queue_depth", window_s=4).values(h, "iris") == {"2": 6.0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "conveyor_request_total",
            "unknown metric 'conveyor_request_total'; did you mean 'conveyor_requests_total'?",
        ),
        ("conveyor_held_requests", "conveyor_held_requests has no value per version of a deployment"),
        ("conveyor_scrape_errors_total", "has no value per version"),
        ("held_requests", "held_requests has no value per version"),
        ("eror_rate(5m)", "unknown indicator 'eror_rate'; did you mean 'error_rate'?"),
        ("p99_latency", "latency_quantile takes (quantile, window)"),
    ],
)
def test_an_analysis_metric_that_cannot_be_read_per_version_says_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate(text)


@pytest.mark.parametrize(
    "text",
    ["conveyor_requests_total", "conveyor_queue_depth", "p95_latency(1m)", "drift_psi", "agreement(5m)"],
)
def test_alert_expressions_and_documented_metrics_are_analysis_metrics(text: str) -> None:
    validate(text)


def test_a_gauges_mean_sums_its_series_at_each_point_in_the_window() -> None:
    h = StackHistory()
    a, b = {"instance": "a", "v": "1"}, {"instance": "b", "v": "1"}
    h.add(0, [("g", a, 100.0)])  # before the window: out
    h.add(10, [("g", a, 1.0), ("g", b, 2.0)])
    h.add(20, [("g", a, 3.0)])
    assert h.mean("g", 15, by=("v",)) == {("1",): 3.0}  # (1 + 2 + 3) / 2 points
    assert h.mean("g", 15, match={"instance": "b"}) == {(): 2.0}
    assert h.mean("g", 5, end=10) == {(): 3.0}
    assert h.mean("missing", 15) == {} and StackHistory().mean("g", 15) == {}
