"""A rollout's analysis read from a real Prometheus (Debian's package) that scrapes a metrics endpoint with
known counts gives the verdict the control plane's own history gives for the same counts; a Prometheus
that cannot be reached makes every check inconclusive with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from conveyor.control.analysis import HistoryProvider, MetricsProvider, PrometheusProvider, Verdict, analyse
from conveyor.observe.history import StackHistory, samples_from_text
from conveyor.observe.metrics import REQUEST_BUCKETS
from conveyor.spec.rollout import Analysis, AnalysisMetric
from tests.fixtures.processes import ProcessGroup, free_port
from tests.fixtures.prometheus import needs_prometheus, start_prometheus

pytestmark = [needs_prometheus, pytest.mark.timeout(120)]
D, STABLE, CAND = "iris", "1", "2"
WINDOW = 120.0
GW = {"component": "gateway", "instance": "gw-1", "model": D}


class Gateway:
    """A gateway's metrics as Conveyor's control plane serves them (with component and instance)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["component", "instance", "model", "version"]
        r = self.registry
        self.requests = Counter("conveyor_requests", "", [*labels, "protocol", "code"], registry=r)
        self.duration = Histogram(
            "conveyor_request_duration_seconds",
            "",
            [*labels, "protocol"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.shadow = Counter("conveyor_shadow_requests", "", [*labels, "code"], registry=r)
        self.shadow_duration = Histogram(
            "conveyor_shadow_request_duration_seconds", "", labels, buckets=REQUEST_BUCKETS, registry=r
        )
        self.compared = Counter("conveyor_comparisons", "", [*labels, "result"], registry=r)
        self.depth = Gauge("conveyor_queue_depth", "", labels, registry=r)
        for version in (STABLE, CAND):  # every series from the first scrape on, at 0
            for code in ("200", "500"):
                self.requests.labels(**GW, version=version, protocol="rest", code=code)
            self.duration.labels(**GW, version=version, protocol="rest")
        for code in ("200", "503"):
            self.shadow.labels(**GW, version=CAND, code=code)
        self.shadow_duration.labels(**GW, version=CAND)
        for result in ("agree", "values_differ", "labels_differ", "failed"):
            self.compared.labels(**GW, version=CAND, result=result)
        self.depth.labels(**GW, version=CAND).set(3)
        self.depth.labels(**GW, version=STABLE).set(1)

    def serve(self, n: int, version: str, code: str, seconds: float) -> None:
        self.requests.labels(**GW, version=version, protocol="rest", code=code).inc(n)
        for _ in range(n):
            self.duration.labels(**GW, version=version, protocol="rest").observe(seconds)

    def mirror(self, n: int, code: str, seconds: float) -> None:
        self.shadow.labels(**GW, version=CAND, code=code).inc(n)
        for _ in range(n):
            self.shadow_duration.labels(**GW, version=CAND).observe(seconds)

    def scrape(self) -> str:
        return generate_latest(self.registry).decode()


@pytest.fixture
def gateway() -> Iterator[tuple[Gateway, int]]:
    gw = Gateway()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=gw.registry)
    try:
        yield gw, port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


ANALYSIS = Analysis(
    success_rate=99.0,
    max_error_rate_increase=5.0,
    p99_latency_ms=100.0,
    max_latency_ratio=1.5,
    agreement=99.0,
    compare=10.0,
    metrics=[
        AnalysisMetric(name="queue", expr="conveyor_queue_depth", max=10.0, max_ratio=2.0),
        AnalysisMetric(name="p50", expr="conveyor_request_duration_seconds", quantile=0.5, max_ratio=10.0),
        AnalysisMetric(name="labels", expr="label_agreement(2m)", min=0.99),
    ],
)


def _judge(provider: MetricsProvider, *, shadow: bool) -> Verdict:
    return asyncio.run(
        analyse(ANALYSIS, provider, D, stable=STABLE, candidate=CAND, window_s=WINDOW, shadow=shadow)
    )


def _total(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if result else None


def test_prometheus_and_the_history_give_the_same_verdict_for_the_same_counts(
    gateway: tuple[Gateway, int], tmp_path: Path, processes: ProcessGroup
) -> None:
    gw, port = gateway
    prom = start_prometheus(processes, tmp_path, [f"127.0.0.1:{port}"], honor_labels=True)
    # Two scrapes of the zeros: the baseline every rate starts from.
    zeros = f'count_over_time(conveyor_queue_depth{{model="{D}",version="2"}}[1m])'
    prom.wait_for(zeros, lambda r: (_total(r) or 0) >= 2)
    history = StackHistory()
    history.add(0.0, samples_from_text(gw.scrape()))

    gw.serve(200, STABLE, "200", 0.008)  # p99 9.95 ms
    gw.serve(180, CAND, "200", 0.04)  # p99 49.75 ms: 5x
    gw.serve(20, CAND, "500", 0.04)  # 90% success
    gw.mirror(95, "200", 0.008)
    gw.mirror(5, "503", 0.008)
    gw.compared.labels(**GW, version=CAND, result="agree").inc(97)
    gw.compared.labels(**GW, version=CAND, result="labels_differ").inc(3)
    gw.compared.labels(**GW, version=CAND, result="failed").inc(40)
    history.add(30.0, samples_from_text(gw.scrape()))
    # One scrape reads every series: once it has the final requests, it has the rest.
    prom.wait_for(f'sum(conveyor_requests_total{{model="{D}"}})', lambda r: _total(r) == 400)

    for shadow in (False, True):
        mine = _judge(HistoryProvider(history), shadow=shadow)

        async def from_prometheus(shadow: bool = shadow) -> Verdict:
            async with PrometheusProvider(prom.url, timeout_s=10) as provider:
                return await analyse(
                    ANALYSIS, provider, D, stable=STABLE, candidate=CAND, window_s=WINDOW, shadow=shadow
                )

        theirs = asyncio.run(from_prometheus())
        assert [(c.name, c.status) for c in theirs.checks] == [(c.name, c.status) for c in mine.checks], (
            theirs.summary(),
            mine.summary(),
        )
        assert theirs.status == mine.status == "fail"
        for a, b in zip(theirs.checks, mine.checks, strict=True):
            if a.name in ("requests", "mirrored requests"):
                # Prometheus extrapolates an increase to the window's end: more, never less.
                assert a.candidate is not None and b.candidate is not None and a.candidate >= b.candidate
                continue
            # The extrapolation is the same for every series of one scrape: shares and quantiles agree.
            for theirs_value, mine_value in ((a.candidate, b.candidate), (a.stable, b.stable)):
                assert theirs_value == (
                    None if mine_value is None else pytest.approx(mine_value, rel=1e-6)
                ), a
        statuses = {c.name: c.status for c in mine.checks}
        if shadow:
            assert mine.summary().startswith("fail: success rate 95% < 99%; agreement 97% < 99%")
            assert statuses["latency ratio"] == "pass"  # the mirrored requests are as fast as stable's
        else:
            assert statuses == {
                "requests": "pass",
                "success rate": "fail",
                "error rate increase": "fail",
                "p99 latency": "pass",
                "latency ratio": "fail",
                "agreement": "fail",
                "queue": "fail",  # 3x stable's queue
                "p50": "pass",
                "labels": "fail",
            }


def test_a_prometheus_that_cannot_be_reached_makes_every_check_inconclusive() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def judge() -> Verdict:
        async with PrometheusProvider(url, timeout_s=2) as provider:
            return await analyse(ANALYSIS, provider, D, stable=STABLE, candidate=CAND, window_s=WINDOW)

    verdict = asyncio.run(judge())
    assert verdict.status == "inconclusive"
    assert {c.status for c in verdict.checks} == {"inconclusive"}
    assert all(f"Prometheus at {url} cannot be reached" in c.detail for c in verdict.checks)
