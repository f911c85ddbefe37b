"""The control plane's window of scraped metrics: increases across restarts and new replicas, rates,
quantiles from histogram buckets, gauges and series."""

from __future__ import annotations

import math

import pytest

from conveyor.observe.history import StackHistory, bucket_quantile, samples_from_text

V1 = {"model": "m", "version": "1", "code": "200"}
ERR = {"model": "m", "version": "1", "code": "500"}


def _requests(instance: str, labels: dict[str, str], value: float) -> tuple[str, dict[str, str], float]:
    return ("conveyor_requests_total", {**labels, "instance": instance}, value)


def test_increase_sums_series_and_a_restart_counts_from_zero() -> None:
    h = StackHistory()
    h.add(0, [_requests("a", V1, 10), _requests("b", V1, 5)])
    h.add(2, [_requests("a", V1, 30), _requests("b", V1, 9)])
    h.add(4, [_requests("a", V1, 4), _requests("b", V1, 10)])  # a restarted: 4 since
    assert h.increase("conveyor_requests_total", 60) == {(): 20 + 4 + 4 + 1}
    assert h.increase("conveyor_requests_total", 60, by=("instance",)) == {("a",): 24, ("b",): 5}
    assert h.rate("conveyor_requests_total", 60, by=("instance",)) == {("a",): 6.0, ("b",): 1.25}


def test_a_new_replica_counts_whole_and_a_missed_scrape_counts_nothing_twice() -> None:
    h = StackHistory()
    h.add(0, [_requests("a", V1, 10)])
    h.add(2, [_requests("a", V1, 12), _requests("new", V1, 7)])  # started after the first point
    h.add(4, [_requests("new", V1, 9)])  # a's scrape failed
    h.add(6, [_requests("a", V1, 15), _requests("new", V1, 9)])
    assert h.increase("conveyor_requests_total", 60, by=("instance",)) == {("a",): 5, ("new",): 9}


def test_the_window_starts_at_the_last_point_before_it_and_match_filters() -> None:
    h = StackHistory()
    for t in range(0, 21, 2):
        h.add(t, [_requests("a", V1, 10 * t), _requests("a", ERR, t)])
    assert h.increase("conveyor_requests_total", 10, by=("code",)) == {("200",): 100, ("500",): 10}
    assert h.rate("conveyor_requests_total", 10, match={"code": "500"}) == {(): 1.0}
    # as of t=10: the window [0, 10]
    assert h.increase("conveyor_requests_total", 10, match={"code": "200"}, end=10) == {(): 100}


def test_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    h = StackHistory()

    def buckets(scale: float) -> list[tuple[str, dict[str, str], float]]:
        cumulative = {"0.001": 0.0, "0.01": 50.0, "0.1": 90.0, "1.0": 100.0, "+Inf": 100.0}
        return [
            ("conveyor_request_duration_seconds_bucket", {"version": "1", "le": le}, n * scale)
            for le, n in cumulative.items()
        ]

    h.add(0, buckets(0))
    h.add(2, buckets(1))
    p50 = h.quantile(0.5, "conveyor_request_duration_seconds", 60, by=("version",))
    p99 = h.quantile(0.99, "conveyor_request_duration_seconds", 60, by=("version",))
    assert p50[("1",)] == pytest.approx(0.01)
    assert p99[("1",)] == pytest.approx(0.1 + 0.9 * 0.9)
    assert bucket_quantile(0.5, [(1.0, 0), (math.inf, 0)]) is None
    assert bucket_quantile(0.99, [(1.0, 1), (math.inf, 100)]) == 1.0  # past the last finite bound


def test_latest_gauges_and_series() -> None:
    h = StackHistory()
    for t in (0, 2, 4):
        h.add(
            t,
            [
                ("conveyor_queue_depth", {"instance": "a", "version": "1"}, t),
                ("conveyor_queue_depth", {"instance": "b", "version": "1"}, 1),
                _requests("a", V1, 3 * t),
            ],
        )
    assert h.latest("conveyor_queue_depth", by=("version",)) == {("1",): 5}
    assert h.latest("conveyor_queue_depth", by=("version",), agg="max") == {("1",): 4}
    rates = h.series("conveyor_requests_total", 2, 60)
    assert [(t, v[()]) for t, v in rates] == [(2, 3.0), (4, 3.0)]
    gauges = h.series("conveyor_queue_depth", 2, 2, kind="gauge")
    assert [t for t, _ in gauges] == [2, 4] and gauges[-1][1] == {(): 5}


def test_old_points_are_dropped_and_time_must_not_go_back() -> None:
    h = StackHistory(keep_s=10, max_points=100)
    for t in range(0, 31, 2):
        h.add(t, [_requests("a", V1, t)])
    assert h.times() == [20, 22, 24, 26, 28, 30]
    with pytest.raises(ValueError, match="time order"):
        h.add(29, [])
    small = StackHistory(max_points=3)
    for t in range(10):
        small.add(t, [])
    assert small.times() == [7, 8, 9]


def test_samples_from_text_adds_the_scrapers_labels() -> None:
    text = (
        "# HELP conveyor_requests_total Requests answered.\n"
        "# TYPE conveyor_requests_total counter\n"
        'conveyor_requests_total{model="m",version="1",code="200"} 7.0\n'
    )
    assert samples_from_text(text, component="replica", instance="r1") == [
        (
            "conveyor_requests_total",
            {"model": "m", "version": "1", "code": "200", "component": "replica", "instance": "r1"},
            7.0,
        )
    ]


def test_a_series_missing_at_the_windows_start_counts_from_its_last_value_before() -> None:
    h = StackHistory()
    h.add(0, [_requests("a", V1, 100)])
    h.add(10, [_requests("b", V1, 1)])  # a's scrape failed: the window below starts here
    h.add(12, [_requests("a", V1, 103), _requests("b", V1, 2)])
    assert h.increase("conveyor_requests_total", 2, by=("instance",)) == {("a",): 3, ("b",): 1}
