"""The per-request recorder and the scrape-time collector: what /metrics shows after known requests."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from conveyor.observe.collectors import ConveyorCollector
from conveyor.observe.metrics import METRICS, REQUEST_BUCKETS
from conveyor.observe.recorder import OTHER, Histogram, RequestCounts, RequestRecorder, recorder_for
from conveyor.settings import Settings

DOCS = Path(__file__).parents[3] / "docs" / "metrics.md"


def _scrape(counts: RequestCounts) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(ConveyorCollector(counts))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_value_on_a_bucket_bound_counts_in_that_bucket_and_beyond_the_last_in_inf() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    assert h.counts == [2, 2, 1]
    assert h.cumulative() == [("0.1", 2.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert h.sum == pytest.approx(8.65)


def test_requests_are_counted_by_model_version_protocol_and_code() -> None:
    counts = RequestCounts()
    rest, grpc = RequestRecorder("rest", counts=counts), RequestRecorder("grpc", counts=counts)
    for _ in range(3):
        rest.record("iris", "2", 200, 0.0003, "r")
    rest.record("iris", "2", 400, 0.0002, "r")
    rest.record("iris", "1", 200, 0.002, "r")
    grpc.record("iris", "2", "OK", 0.02, "r")
    got = _scrape(counts)

    def total(version: str, protocol: str, code: str) -> float:
        labels = {"model": "iris", "version": version, "protocol": protocol, "code": code}
        return got[("conveyor_requests_total", tuple(sorted(labels.items())))]

    assert total("2", "rest", "200") == 3
    assert total("2", "rest", "400") == 1
    assert total("1", "rest", "200") == 1
    assert total("2", "grpc", "OK") == 1
    series = (("model", "iris"), ("protocol", "rest"), ("version", "2"))
    assert got[("conveyor_request_duration_seconds_count", series)] == 4
    assert got[("conveyor_request_duration_seconds_sum", series)] == pytest.approx(0.0011)
    # 0.0002 and 0.0003 s: above 100 µs, within 250 µs and 500 µs respectively
    assert got[("conveyor_request_duration_seconds_bucket", (("le", "0.0001"), *series))] == 0
    assert got[("conveyor_request_duration_seconds_bucket", (("le", "0.00025"), *series))] == 1
    assert got[("conveyor_request_duration_seconds_bucket", (("le", "0.0005"), *series))] == 4
    assert got[("conveyor_request_duration_seconds_bucket", (("le", "+Inf"), *series))] == 4


def test_request_buckets_span_100_microseconds_to_10_seconds() -> None:
    assert (REQUEST_BUCKETS[0], REQUEST_BUCKETS[-1]) == (0.0001, 10.0)


def test_made_up_model_names_beyond_the_series_cap_are_counted_together() -> None:
    counts = RequestCounts(max_series=2)
    rec = RequestRecorder("rest", counts=counts)
    for name in ("a", "b", "c", "d"):
        rec.record(name, None, 404, 0.001, None)
    assert sorted(counts.series) == [("_other", "_other", "rest"), ("a", "", "rest"), ("b", "", "rest")]
    assert counts.series[(OTHER, OTHER, "rest")].codes == {404: 2}


def test_the_access_log_has_the_contract_fields_for_sampled_requests_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counts = RequestCounts()
    caplog.set_level(logging.INFO, logger="conveyor.access")
    RequestRecorder("rest", sample=0.0, counts=counts).record("m", "1", 200, 0.001, "a")
    RequestRecorder("rest", sample=0.0, counts=counts).record("m", "1", 429, 0.001, "a")
    assert caplog.records == []
    trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"  # the caller asked for this one (sampled flag)
    RequestRecorder("rest", sample=0.0, counts=counts).record("m", "1", 200, 0.001, "b", trace)
    RequestRecorder("grpc", sample=1.0, counts=counts).record("m", "1", "INVALID_ARGUMENT", 0.0025, "c")
    RequestRecorder("rest", sample=0.0, counts=counts).record("m", "1", 503, 0.004, "d")  # failures: always
    rows = [
        {k: getattr(r, k) for k in ("request_id", "model", "version", "protocol", "status", "latency_ms")}
        for r in caplog.records
    ]
    assert rows == [
        {
            "request_id": "b",
            "model": "m",
            "version": "1",
            "protocol": "rest",
            "status": 200,
            "latency_ms": 1.0,
        },
        {
            "request_id": "c",
            "model": "m",
            "version": "1",
            "protocol": "grpc",
            "status": "INVALID_ARGUMENT",
            "latency_ms": 2.5,
        },
        {
            "request_id": "d",
            "model": "m",
            "version": "1",
            "protocol": "rest",
            "status": 503,
            "latency_ms": 4.0,
        },
    ]
    assert [r.traceparent for r in caplog.records] == [trace, None, None]  # type: ignore[attr-defined]


def test_metrics_off_records_nothing_and_no_hook_is_installed_without_an_access_log() -> None:
    assert recorder_for("rest", Settings(metrics_enabled=False, access_log_sample=0.0)) is None
    on = recorder_for("rest", Settings())
    assert on is not None and on.enabled
    counts = RequestCounts()
    RequestRecorder("rest", enabled=False, counts=counts).record("m", "1", 200, 0.001, None)
    assert counts.series == {}


def test_every_metric_name_is_documented() -> None:
    text = DOCS.read_text()
    missing = [
        name
        for name in (*METRICS, "process_cpu_seconds_total", "process_resident_memory_bytes")
        if f"`{name}`" not in text
    ]
    assert missing == []
