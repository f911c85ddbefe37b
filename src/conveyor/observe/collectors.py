"""The process's Conveyor metrics, built at scrape time from the plain counters of observe/recorder.py.

Components register themselves as sources (``track_batcher``, ``track_gateway``, ``track_control``); the
sets are weak, so a stopped component leaves no series behind once collected. ``render()`` is what every
``GET /metrics`` answers.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from conveyor.observe import metrics as m
from conveyor.observe.control_metrics import ControlMetrics
from conveyor.observe.recorder import REQUESTS, SHADOWS, BatchMetrics, Histogram, RequestCounts, ShadowCounts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class BatcherSnapshot:
    model: str
    version: str
    queued: int
    in_flight: int
    metrics: BatchMetrics


@dataclass(frozen=True, slots=True)
class CacheSnapshot:
    model: str
    version: str
    hits: int
    misses: int
    entries: int
    bytes: int


class CacheSource(Protocol):
    def metrics_snapshot(self) -> CacheSnapshot: ...


class BatcherSource(Protocol):
    def metrics_snapshot(self) -> BatcherSnapshot: ...


class GatewaySource(Protocol):
    def held_by_model(self) -> dict[str, int]: ...


_batchers: weakref.WeakSet[BatcherSource] = weakref.WeakSet()
_gateways: weakref.WeakSet[GatewaySource] = weakref.WeakSet()
_caches: weakref.WeakSet[CacheSource] = weakref.WeakSet()
_controls: weakref.WeakSet[ControlMetrics] = weakref.WeakSet()


def track_batcher(source: BatcherSource) -> None:
    _batchers.add(source)


def untrack_batcher(source: BatcherSource) -> None:
    _batchers.discard(source)


def track_cache(source: CacheSource) -> None:
    """A response cache (runtime/cache.py): conveyor_cache_* while it lives."""
    _caches.add(source)


def untrack_cache(source: CacheSource) -> None:
    _caches.discard(source)


def track_gateway(source: GatewaySource) -> None:
    _gateways.add(source)


def track_control(source: ControlMetrics) -> None:
    _controls.add(source)


def _counter(name: str) -> CounterMetricFamily:
    spec = m.METRICS[name]
    return CounterMetricFamily(name, spec.help, labels=spec.labels)


def _gauge(name: str) -> GaugeMetricFamily:
    spec = m.METRICS[name]
    return GaugeMetricFamily(name, spec.help, labels=spec.labels)


def _hist(name: str) -> HistogramMetricFamily:
    spec = m.METRICS[name]
    return HistogramMetricFamily(name, spec.help, labels=spec.labels)


def _histogram(family: HistogramMetricFamily, labels: list[str], h: Histogram) -> None:
    family.add_metric(labels, h.cumulative(), h.sum)


class ConveyorCollector(Collector):
    """Requests of ``counts``, second sends and comparisons of ``shadows``, and the batchers, gateways and
    control planes tracked in this process."""

    def __init__(self, counts: RequestCounts = REQUESTS, shadows: ShadowCounts = SHADOWS) -> None:
        self.counts = counts
        self.shadows = shadows

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        yield from _shadows(self.shadows)
        yield from self._batchers(list(_batchers))
        yield from _caches_of(list(_caches))
        gateways = list(_gateways)
        if gateways:
            held = _gauge(m.HELD)
            totals: dict[str, int] = {}
            for g in gateways:
                for model, n in g.held_by_model().items():
                    totals[model] = totals.get(model, 0) + n
            for model, n in sorted(totals.items()):
                held.add_metric([model], n)
            yield held
        for control in list(_controls):
            yield from _control(control)

    def _requests(self) -> Iterator[Metric]:
        total, duration = _counter(m.REQUESTS), _hist(m.REQUEST_DURATION)
        for labels, series in list(self.counts.series.items()):
            for code, n in list(series.codes.items()):
                total.add_metric([*labels, str(code)], n)
            _histogram(duration, list(labels), series.duration)
        yield total
        yield duration

    def _batchers(self, sources: Iterable[BatcherSource]) -> Iterator[Metric]:
        merged: dict[tuple[str, str], tuple[int, int, BatchMetrics]] = {}
        for source in sources:  # two batchers of one version in a process (tests, in-process replicas) add up
            s = source.metrics_snapshot()
            key = (s.model, s.version)
            if key in merged:
                queued, held, acc = merged[key]
                acc.add(s.metrics)  # a snapshot's copy: adding to it changes no batcher
                merged[key] = (queued + s.queued, held + s.in_flight, acc)
            else:
                merged[key] = (s.queued, s.in_flight, s.metrics)
        if not merged:
            return
        depth, in_flight = _gauge(m.QUEUE_DEPTH), _gauge(m.IN_FLIGHT)
        queue, run, rows = _hist(m.QUEUE_DURATION), _hist(m.INFERENCE_DURATION), _hist(m.BATCH_SIZE)
        for (model, version), (queued, busy, hist) in sorted(merged.items()):
            labels = [model, version]
            depth.add_metric(labels, queued)
            in_flight.add_metric(labels, busy)
            _histogram(queue, labels, hist.queue)
            _histogram(run, labels, hist.run)
            _histogram(rows, labels, hist.rows)
        yield from (depth, in_flight, queue, run, rows)


def _caches_of(sources: Iterable[CacheSource]) -> Iterator[Metric]:
    """Only in a process with a response cache; two caches of one version (tests) add up."""
    merged: dict[tuple[str, str], list[int]] = {}
    for source in sources:
        s = source.metrics_snapshot()
        acc = merged.setdefault((s.model, s.version), [0, 0, 0, 0])
        for i, n in enumerate((s.hits, s.misses, s.entries, s.bytes)):
            acc[i] += n
    if not merged:
        return
    requests, entries, size = _counter(m.CACHE_REQUESTS), _gauge(m.CACHE_ENTRIES), _gauge(m.CACHE_BYTES)
    for (model, version), (hits, misses, held, nbytes) in sorted(merged.items()):
        requests.add_metric([model, version, "hit"], hits)
        requests.add_metric([model, version, "miss"], misses)
        entries.add_metric([model, version], held)
        size.add_metric([model, version], nbytes)
    yield from (requests, entries, size)


def _shadows(shadows: ShadowCounts) -> Iterator[Metric]:
    """Only in a process that sent or dropped a second send (a gateway in a shadow or compare rollout)."""
    if not (shadows.sends or shadows.dropped):
        return
    sent, duration, dropped = (
        _counter(m.SHADOW_REQUESTS),
        _hist(m.SHADOW_DURATION),
        _counter(m.SHADOW_DROPPED),
    )
    for labels, series in sorted(shadows.sends.items()):
        for code, n in sorted(series.codes.items()):
            sent.add_metric([*labels, str(code)], n)
        _histogram(duration, list(labels), series.duration)
    for labels, n in sorted(shadows.dropped.items()):
        dropped.add_metric(list(labels), n)
    compared, difference = _counter(m.COMPARISONS), _hist(m.COMPARISON_DIFFERENCE)
    for result_labels, n in sorted(shadows.comparisons.items()):
        compared.add_metric(list(result_labels), n)
    for labels, h in sorted(shadows.differences.items()):
        _histogram(difference, list(labels), h)
    yield from (sent, duration, dropped, compared, difference)


def _control(control: ControlMetrics) -> Iterator[Metric]:
    replicas = _gauge(m.REPLICAS)
    for states, n in sorted(control.replica_states().items()):
        replicas.add_metric(list(states), n)
    restarts, decisions, errors = _counter(m.RESTARTS), _counter(m.SCALE_DECISIONS), _counter(m.SCRAPE_ERRORS)
    for labels, n in sorted(control.restarts.items()):
        restarts.add_metric(list(labels), n)
    for labels, n in sorted(control.decisions.items()):
        decisions.add_metric(list(labels), n)
    for instance, n in sorted(control.scrape_errors.items()):
        errors.add_metric([instance], n)
    yield from (replicas, restarts, decisions, errors)
    if control.leader is not None:
        leader = _gauge(m.LEADER)
        holder, leading = control.leader()
        leader.add_metric([holder], 1.0 if leading else 0.0)
        yield leader


m.REGISTRY.register(ConveyorCollector())


def render() -> bytes:
    """The process's metrics in the Prometheus text format (``CONTENT_TYPE``)."""
    return generate_latest(m.REGISTRY)
