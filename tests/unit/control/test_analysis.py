"""A rollout's analysis judged from a StackHistory filled with scrapes of a gateway: every check passes,
fails at its bound and not before, is inconclusive with too few requests or no value, and is skipped when
stable has too few; shadow mode reads the mirrored requests; a provider that fails never raises."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from conveyor import errors
from conveyor.control.analysis import (
    Check,
    HistoryProvider,
    PrometheusProvider,
    Verdict,
    analyse,
    provider_for,
)
from conveyor.observe.alert_expr import Expr, build
from conveyor.observe.history import Sample, StackHistory
from conveyor.observe.metrics import REQUEST_BUCKETS
from conveyor.spec.rollout import Analysis, AnalysisMetric
from conveyor.spec.rollout import PrometheusProvider as PrometheusSpec

D = "iris"
STABLE, CAND = "1", "2"
WINDOW = 30.0
# Bucket upper bounds a version's requests all fall in: p99 = lower + (upper - lower) * 0.99.
FAST, SLOW = 0.01, 0.05  # p99 9.95 ms and 49.75 ms: 5x


def _gw(version: str, **labels: str) -> dict[str, str]:
    return {"component": "gateway", "instance": "gw", "model": D, "version": version, **labels}


def traffic(
    version: str, ok: float = 0, failed: float = 0, le: float = FAST, *, shadow: bool = False
) -> list[Sample]:
    """A gateway's counters for ``version`` at the window's end: ``ok`` answers of 200, ``failed`` of 500,
    all of them within the bucket ending at ``le`` (``shadow``: as mirrored requests)."""
    requests = "conveyor_shadow_requests_total" if shadow else "conveyor_requests_total"
    duration = "conveyor_shadow_request_duration_seconds" if shadow else "conveyor_request_duration_seconds"
    protocol = {} if shadow else {"protocol": "rest"}
    n = ok + failed
    out: list[Sample] = [
        (requests, _gw(version, code="200", **protocol), ok),
        (requests, _gw(version, code="500", **protocol), failed),
    ]
    for bound in (*REQUEST_BUCKETS, float("inf")):
        out.append((f"{duration}_bucket", _gw(version, le=str(bound), **protocol), n if bound >= le else 0))
    return out


def comparisons(version: str = CAND, **results: float) -> list[Sample]:
    return [("conveyor_comparisons_total", _gw(version, result=r), n) for r, n in results.items()]


def drift(version: str, psi: float) -> list[Sample]:
    labels = {"model": D, "version": version, "feature": "petal", "instance": "r1", "component": "replica"}
    return [("conveyor_drift_psi", labels, psi)]


def history(*groups: list[Sample], span: float = WINDOW) -> StackHistory:
    """Two scrapes ``span`` apart: every series at 0 (counters) or its value (gauges), then ``groups``."""
    samples = [s for g in groups for s in g]
    h = StackHistory()
    h.add(0.0, [(n, labels, 0.0 if "_total" in n or "_bucket" in n else v) for n, labels, v in samples])
    h.add(span, samples)
    return h


def judge(
    h: StackHistory | Any, analysis: Analysis | None = None, *, shadow: bool = False, **fields: Any
) -> Verdict:
    a = analysis or Analysis(**fields)
    provider = HistoryProvider(h) if isinstance(h, StackHistory) else h
    return asyncio.run(analyse(a, provider, D, stable=STABLE, candidate=CAND, window_s=WINDOW, shadow=shadow))


def check(verdict: Verdict, name: str) -> Check:
    found = [c for c in verdict.checks if c.name == name]
    assert len(found) == 1, [c.name for c in verdict.checks]
    return found[0]


def statuses(verdict: Verdict) -> dict[str, str]:
    return {c.name: c.status for c in verdict.checks}


def test_a_good_candidate_passes_every_default_check_and_says_so_in_one_line() -> None:
    v = judge(history(traffic(STABLE, ok=200), traffic(CAND, ok=50)))
    assert v.status == "pass"
    assert statuses(v) == {"requests": "pass", "success rate": "pass", "latency ratio": "pass"}
    assert v.requests == {STABLE: 200, CAND: 50}
    assert check(v, "success rate").candidate == 100.0
    ratio = check(v, "latency ratio")
    assert (ratio.candidate, ratio.stable) == pytest.approx((9.95, 9.95)) and ratio.bound == "≤ 1.5× stable"
    assert v.summary() == (
        "pass: requests 50 ≥ 20; success rate 100% ≥ 99%; "
        "latency ratio 1× ≤ 1.5× (p99 9.95 ms vs stable 9.95 ms)"
    )
    assert v.to_dict()["windowSeconds"] == WINDOW and v.to_dict()["summary"] == v.summary()
    assert v.to_dict()["checks"][1] == {
        "name": "success rate",
        "status": "pass",
        "candidate": 100.0,
        "stable": 100.0,
        "bound": "≥ 99%",
        "detail": "100% ≥ 99%",
    }


@pytest.mark.parametrize(("failed", "status"), [(1, "pass"), (2, "fail")])
def test_success_rate_holds_at_its_bound_and_fails_below(failed: int, status: str) -> None:
    v = judge(history(traffic(STABLE, ok=100), traffic(CAND, ok=100 - failed, failed=failed)))
    assert (v.status, check(v, "success rate").status) == (status, status)
    if status == "fail":
        assert v.summary() == "fail: success rate 98% < 99%"


def test_a_candidate_with_too_few_requests_is_inconclusive_even_when_every_answer_failed() -> None:
    v = judge(history(traffic(STABLE, ok=100), traffic(CAND, failed=19, le=SLOW)), max_drift_psi=0.2)
    assert v.status == "inconclusive"
    assert set(statuses(v).values()) == {"inconclusive"}
    assert check(v, "success rate").detail == (
        "candidate has 19 requests in the window, fewer than minRequests 20"
    )
    assert v.summary() == "inconclusive: requests 19 < 20 (minRequests)"
    assert judge(history(traffic(STABLE, ok=100), traffic(CAND, failed=20))).status == "fail"


def test_checks_against_stable_are_skipped_when_stable_has_too_few_requests() -> None:
    # At weight 100 stable answers nothing: only the absolute bounds judge.
    v = judge(history(traffic(STABLE, ok=3), traffic(CAND, ok=100, le=SLOW)), max_error_rate_increase=1.0)
    assert statuses(v) == {
        "requests": "pass",
        "success rate": "pass",
        "error rate increase": "skipped",
        "latency ratio": "skipped",
    }
    assert v.status == "pass"
    assert (
        check(v, "latency ratio").detail == "stable has 3 requests in the window, fewer than minRequests 20"
    )


@pytest.mark.parametrize(("failed", "status"), [(3, "pass"), (4, "fail")])
def test_error_rate_increase_is_judged_in_points_above_stables(failed: int, status: str) -> None:
    v = judge(
        history(traffic(STABLE, ok=99, failed=1), traffic(CAND, ok=100 - failed, failed=failed)),
        success_rate=None,
        max_error_rate_increase=2.0,
    )
    c = check(v, "error rate increase")
    assert (c.status, c.bound) == (status, "≤ +2 pp over stable")
    assert (c.candidate, c.stable) == pytest.approx((failed, 1.0))
    if status == "fail":
        assert c.detail == "4% vs stable 1%: +3 pp > +2 pp"


@pytest.mark.parametrize(("limit", "status"), [(24.85, "pass"), (24.84, "fail")])
def test_p99_latency_is_an_absolute_bound_in_milliseconds(limit: float, status: str) -> None:
    v = judge(
        history(traffic(STABLE, ok=100), traffic(CAND, ok=100, le=0.025)),
        p99_latency_ms=limit,
        max_latency_ratio=None,
    )
    assert check(v, "p99 latency").status == status
    if status == "fail":
        assert v.summary() == "fail: p99 latency 24.85 ms > 24.84 ms"


@pytest.mark.parametrize(("limit", "status"), [(5.0, "pass"), (4.99, "fail")])
def test_a_candidate_five_times_slower_fails_the_latency_ratio(limit: float, status: str) -> None:
    v = judge(history(traffic(STABLE, ok=100), traffic(CAND, ok=100, le=SLOW)), max_latency_ratio=limit)
    c = check(v, "latency ratio")
    assert c.status == status
    assert (c.candidate, c.stable) == pytest.approx((49.75, 9.95))
    if status == "fail":
        assert c.detail == "5× > 4.99× (p99 49.75 ms vs stable 9.95 ms)"


def test_agreement_is_checked_only_where_answers_are_compared() -> None:
    h = history(traffic(STABLE, ok=100), traffic(CAND, ok=100), comparisons(agree=98, values_differ=2))
    assert "agreement" not in statuses(judge(h))  # canary without compare: nothing to agree on
    v = judge(h, compare=10.0)
    c = check(v, "agreement")
    assert (c.status, c.candidate, c.detail) == ("fail", 98.0, "98% < 99% of 100 comparisons")
    assert check(judge(h, compare=10.0, agreement=98.0), "agreement").status == "pass"
    assert "agreement" not in statuses(judge(h, compare=10.0, agreement=None))


def test_failed_comparisons_are_not_disagreement_and_too_few_comparisons_are_inconclusive() -> None:
    h = history(
        traffic(STABLE, ok=100),
        traffic(CAND, ok=100),
        comparisons(agree=19, labels_differ=0, failed=50),
    )
    c = check(judge(h, compare=10.0), "agreement")
    assert (c.status, c.detail) == ("inconclusive", "19 comparisons in the window, fewer than minRequests 20")
    h = history(traffic(STABLE, ok=100), traffic(CAND, ok=100), comparisons(agree=20, failed=50))
    assert check(judge(h, compare=10.0), "agreement").status == "pass"


def test_shadow_mode_judges_the_candidates_mirrored_requests() -> None:
    # The candidate answers no client: its requests, errors and latency are the mirrored ones.
    h = history(
        traffic(STABLE, ok=200),
        traffic(CAND, ok=90, failed=10, le=SLOW, shadow=True),
        comparisons(agree=88, labels_differ=2),
    )
    v = judge(h, shadow=True)
    assert statuses(v) == {
        "mirrored requests": "pass",
        "success rate": "fail",
        "latency ratio": "fail",
        "agreement": "fail",
    }
    assert v.requests == {STABLE: 200, CAND: 100}
    assert check(v, "success rate").candidate == pytest.approx(90.0)
    assert check(v, "latency ratio").candidate == pytest.approx(49.75)
    assert v.summary().startswith("fail: success rate 90% < 99%; latency ratio 5× > 1.5×")
    # Its live requests (none here) do not count: without mirrored ones it is inconclusive.
    quiet = judge(history(traffic(STABLE, ok=200), traffic(CAND, ok=100)), shadow=True)
    assert quiet.summary() == "inconclusive: mirrored requests 0 < 20 (minRequests)"


@pytest.mark.parametrize(("psi", "status"), [(0.2, "pass"), (0.21, "fail")])
def test_drift_psi_is_an_upper_bound_on_the_candidate(psi: float, status: str) -> None:
    v = judge(history(traffic(STABLE, ok=100), traffic(CAND, ok=100), drift(CAND, psi)), max_drift_psi=0.2)
    assert check(v, "drift PSI").status == status


def test_no_drift_measured_is_inconclusive_and_says_why() -> None:
    v = judge(history(traffic(STABLE, ok=100), traffic(CAND, ok=100)), max_drift_psi=0.2)
    c = check(v, "drift PSI")
    assert c.status == "inconclusive" and "reference statistics" in c.detail


def _metric(**fields: Any) -> Analysis:
    return Analysis(success_rate=None, max_latency_ratio=None, metrics=[AnalysisMetric(**fields)])


def test_a_counter_by_name_is_a_rate_and_a_gauge_its_mean_over_the_window() -> None:
    h = StackHistory()
    depth = {"model": D, "version": CAND, "instance": "r1", "component": "replica"}
    base = traffic(STABLE, ok=0) + traffic(CAND, ok=0)
    h.add(0.0, [*base, ("conveyor_queue_depth", depth, 2.0)])
    h.add(15.0, [*base, ("conveyor_queue_depth", depth, 4.0)])
    h.add(30.0, [*traffic(STABLE, ok=300), *traffic(CAND, ok=60), ("conveyor_queue_depth", depth, 6.0)])
    rate = judge(h, _metric(name="rate", expr="conveyor_requests_total", min=2.0, max_ratio=0.2))
    c = check(rate, "rate")
    assert (c.status, c.candidate, c.stable, c.bound) == ("pass", 2.0, 10.0, "≥ 2, ≤ 0.2× stable")
    assert c.detail == "2 within ≥ 2, ≤ 0.2× stable; 0.2× stable"
    # The point at the window's start is out of a gauge's mean (as avg_over_time): (4 + 6) / 2.
    gauge = judge(h, _metric(name="depth", expr="conveyor_queue_depth", max=4.9))
    assert (check(gauge, "depth").status, check(gauge, "depth").candidate) == ("fail", 5.0)


def test_a_histogram_by_name_reads_its_quantile_and_an_alert_expression_its_own_window() -> None:
    h = history(traffic(STABLE, ok=100), traffic(CAND, ok=100, le=0.025))
    v = judge(h, _metric(name="p50", expr="conveyor_request_duration_seconds", quantile=0.5, max=0.0174))
    c = check(v, "p50")
    assert c.candidate == pytest.approx(0.0175) and c.status == "fail"
    v = judge(h, _metric(name="p95", expr="p95_latency(1m)", max=0.025, max_ratio=2.0))
    assert check(v, "p95").status == "fail"
    assert check(v, "p95").detail == "2.487× stable > 2×"  # p95 24.25 ms vs 9.75 ms


def test_a_metric_ratio_without_enough_stable_requests_is_skipped_unless_a_bound_judges() -> None:
    h = history(traffic(STABLE, ok=5), traffic(CAND, ok=100, le=SLOW))
    only_ratio = judge(h, _metric(name="p99", expr="p99_latency(1m)", max_ratio=1.1))
    assert check(only_ratio, "p99").status == "skipped" and only_ratio.status == "pass"
    with_max = judge(h, _metric(name="p99", expr="p99_latency(1m)", max=0.01, max_ratio=1.1))
    assert check(with_max, "p99").status == "fail"


def test_a_metric_the_spec_no_longer_accepts_is_inconclusive() -> None:
    gone = AnalysisMetric.model_construct(name="gone", expr="conveyor_not_a_metric", quantile=0.99, max=1.0)
    a = Analysis(metrics=[gone])
    v = judge(history(traffic(STABLE, ok=100), traffic(CAND, ok=100)), a)
    c = check(v, "gone")
    assert c.status == "inconclusive" and "unknown metric 'conveyor_not_a_metric'" in c.detail


class Failing:
    """A provider that cannot answer some expressions."""

    def __init__(self, h: StackHistory, broken: dict[str, BaseException]) -> None:
        self.inner = HistoryProvider(h)
        self.broken = broken

    async def values(self, expr: Expr, deployment: str) -> dict[str, float]:
        for indicator, exc in self.broken.items():
            if expr.indicator == indicator:
                raise exc
        return await self.inner.values(expr, deployment)


def test_a_provider_that_cannot_answer_makes_checks_inconclusive_with_its_reason() -> None:
    h = history(traffic(STABLE, ok=100), traffic(CAND, ok=100))
    down = errors.Unavailable("Prometheus at http://p:9090 cannot be reached: connection refused")
    v = judge(Failing(h, {"requests": down}))
    assert v.status == "inconclusive" and set(statuses(v).values()) == {"inconclusive"}
    assert v.summary() == f"inconclusive: requests {down.message}" and v.requests == {}
    v = judge(Failing(h, {"latency_quantile": RuntimeError("bug")}))
    assert statuses(v) == {"requests": "pass", "success rate": "pass", "latency ratio": "inconclusive"}
    assert (
        check(v, "latency ratio").detail == "reading latency_quantile(0.99, 30s) failed: RuntimeError('bug')"
    )


def test_the_verdict_is_fail_before_inconclusive_before_pass() -> None:
    h = history(traffic(STABLE, ok=100), traffic(CAND, ok=50, failed=50))
    v = judge(Failing(h, {"latency_quantile": errors.Unavailable("down")}))
    assert statuses(v)["latency ratio"] == "inconclusive" and v.status == "fail"


# -- Prometheus's answers (no server: a mock transport) -----------------------------------------------


def _prometheus(handler: Any) -> PrometheusProvider:
    return PrometheusProvider(
        "http://prom:9090/", client=httpx.AsyncClient(transport=httpx.MockTransport(handler))
    )


def test_the_prometheus_provider_reads_a_vector_per_version() -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["query"])
        assert str(request.url).startswith("http://prom:9090/api/v1/query?")
        result = [
            {"metric": {"model": D, "version": "1"}, "value": [1.0, "0.25"]},
            {"metric": {"model": D, "version": "2"}, "value": [1.0, "NaN"]},
        ]
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    expr = build("error_rate", window_s=1.5)
    assert asyncio.run(_prometheus(answer).values(expr, D)) == {"1": 0.25}  # NaN: no requests, no value
    assert asked == [expr.promql(D)] and "[1500ms]" in asked[0]


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            httpx.Response(400, json={"status": "error", "error": "parse error"}),
            "answered HTTP 400: parse error",
        ),
        (httpx.Response(503, text="Service Unavailable"), "answered HTTP 503, not JSON"),
        (httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix"}}), "not a vector"),
    ],
)
def test_a_prometheus_error_is_an_inconclusive_check_with_the_reason(
    response: httpx.Response, message: str
) -> None:
    v = judge(_prometheus(lambda request: response))
    assert v.status == "inconclusive"
    assert all(message in c.detail and "Prometheus at http://prom:9090" in c.detail for c in v.checks)


def test_a_prometheus_that_does_not_answer_in_time_is_named_with_its_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    v = judge(_prometheus(slow))
    assert v.summary() == "inconclusive: requests Prometheus at http://prom:9090 did not answer within 5s"


def test_provider_for_picks_the_specs_prometheus_else_the_history() -> None:
    h = StackHistory()
    assert isinstance(provider_for(Analysis(), h), HistoryProvider)
    p = provider_for(Analysis(prometheus=PrometheusSpec(url="http://prom:9090", timeout="2s")), h)
    assert isinstance(p, PrometheusProvider) and (p.url, p.timeout_s) == ("http://prom:9090", 2.0)
    asyncio.run(p.aclose())
