"""What the request path records: plain counters and fixed-bucket histograms, no prometheus_client objects.

A request costs one dict look-up for its (model, version, protocol) series, one integer increment for its
code and one ``bisect`` into the duration buckets; metric families are built only at scrape time
(observe/collectors.py). Everything here runs on the thread that owns it (the event loop; a batcher's own
lock), so nothing takes a lock per request.
"""

from __future__ import annotations

import logging
import random
from bisect import bisect_left
from typing import TYPE_CHECKING

from prometheus_client.utils import floatToGoString

from conveyor.observe import otlp, trace
from conveyor.observe.metrics import BATCH_BUCKETS, DIFFERENCE_BUCKETS, REQUEST_BUCKETS, RUN_BUCKETS

if TYPE_CHECKING:
    from conveyor.observe.otlp import SpanExport
    from conveyor.settings import Settings

MAX_SERIES = 2000
"""(model, version, protocol) series one process keeps; requests beyond (names made up by clients, each a
404) are counted under model and version ``OTHER``, so a scan cannot grow the process's memory."""
OTHER = "_other"
access_log = logging.getLogger("conveyor.access")
# Answers always logged: the server failed (HTTP 5xx, and the gRPC codes they map to).
_FAILED: frozenset[int | str] = frozenset(
    {*range(500, 600), "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNKNOWN", "DEADLINE_EXCEEDED"}
)


class Histogram:
    """Counts per bucket (the last is +Inf) and the sum of the observed values."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le is inclusive: value == bound counts there
        self.sum += value

    def copy(self) -> Histogram:
        other = Histogram(self.bounds)
        other.counts, other.sum = list(self.counts), self.sum
        return other

    def add(self, other: Histogram) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs as HistogramMetricFamily takes them, +Inf last."""
        out, total = [], 0
        for bound, n in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, float(total)))
        return out


class RequestSeries:
    """One (model, version, protocol): answers by code (HTTP status or gRPC code name) and durations."""

    __slots__ = ("codes", "duration", "labels")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.labels = labels
        self.codes: dict[int | str, int] = {}
        self.duration = Histogram(REQUEST_BUCKETS)


class RequestCounts:
    """Every request series of the process (one store, whichever front ends record into it)."""

    def __init__(self, max_series: int = MAX_SERIES) -> None:
        self.max_series = max_series
        self.series: dict[tuple[str, str, str], RequestSeries] = {}

    def get(self, model: str, version: str, protocol: str) -> RequestSeries:
        key = (model, version, protocol)
        found = self.series.get(key)
        if found is None:
            if len(self.series) >= self.max_series:
                key = (OTHER, OTHER, protocol)
                found = self.series.get(key)
            if found is None:
                found = self.series[key] = RequestSeries(key)
        return found


REQUESTS = RequestCounts()
"""The process's request counts: what ``conveyor_requests_total`` and the request durations show."""


class RequestRecorder:
    """The hook one front end calls once per answered inference request: counts it (unless metrics are
    off) and writes the access log record for the sampled ones (contract of docs/metrics.md); with ``spans``
    (observe/otlp.py) it also exports the span of each request whose traceparent says sampled."""

    __slots__ = ("counts", "enabled", "protocol", "sample", "spans")

    def _draw(self) -> bool:
        sample = self.sample
        return sample > 0.0 and (sample >= 1.0 or random.random() < sample)

    def __init__(
        self,
        protocol: str,
        *,
        enabled: bool = True,
        sample: float = 0.0,
        counts: RequestCounts = REQUESTS,
        spans: SpanExport | None = None,
    ) -> None:
        self.protocol = protocol
        self.enabled = enabled
        self.sample = sample
        self.counts = counts
        self.spans = spans

    def record(
        self,
        model: str,
        version: str | None,
        status: int | str,
        seconds: float,
        request_id: str | None,
        traceparent: str | None = None,
        parent: str | None = None,
    ) -> None:
        """One answer: ``status`` the HTTP status (int) or the gRPC code name; ``seconds`` since the head;
        ``traceparent`` this server's span, ``parent`` the caller's (only the span export reads it)."""
        if self.enabled:
            series = self.counts.get(model, version or "", self.protocol)
            codes = series.codes
            codes[status] = codes.get(status, 0) + 1
            series.duration.observe(seconds)
        # Logged: a server failure, or a request whose span says sampled (observe/trace.py: decided once,
        # where the request entered, so every hop logs it or none does); one with no span, drawn here.
        failed = status in _FAILED
        sampled = trace.sampled(traceparent)
        if failed or sampled or (traceparent is None and self._draw()):
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "model": model,
                    "version": version,
                    "protocol": self.protocol,
                    "status": status,
                    "latency_ms": round(seconds * 1000, 3),
                    "traceparent": traceparent,
                },
            )
        spans = self.spans
        if spans is not None and sampled:
            assert traceparent is not None
            answer = (spans.component, self.protocol, model, version, status, seconds, request_id)
            spans.export(otlp.span_fields(*answer, traceparent, parent, failed))


class ShadowCounts:
    """A gateway's second sends (mirrored to a shadow candidate, or to stable to compare) and comparisons:
    conveyor_shadow_* and conveyor_comparison* (docs/metrics.md). Labels come from the routing table's
    splits, never from clients, so the series are few."""

    def __init__(self) -> None:
        self.sends: dict[tuple[str, str], RequestSeries] = {}
        self.dropped: dict[tuple[str, str], int] = {}
        self.comparisons: dict[tuple[str, str, str], int] = {}
        self.differences: dict[tuple[str, str], Histogram] = {}

    def sent(self, model: str, version: str, code: int, seconds: float) -> None:
        """A second send to ``version`` answered with ``code`` (an HTTP status) after ``seconds``."""
        series = self.sends.get((model, version))
        if series is None:
            series = self.sends[(model, version)] = RequestSeries((model, version, ""))
        series.codes[code] = series.codes.get(code, 0) + 1
        series.duration.observe(seconds)

    def drop(self, model: str, version: str) -> None:
        self.dropped[(model, version)] = self.dropped.get((model, version), 0) + 1

    def compared(self, model: str, version: str, result: str, difference: float | None) -> None:
        """One comparison for the candidate ``version``; a finite ``difference`` goes into the histogram."""
        key = (model, version, result)
        self.comparisons[key] = self.comparisons.get(key, 0) + 1
        if difference is not None and difference < float("inf"):
            histogram = self.differences.get((model, version))
            if histogram is None:
                histogram = self.differences[(model, version)] = Histogram(DIFFERENCE_BUCKETS)
            histogram.observe(difference)


SHADOWS = ShadowCounts()
"""The process's second sends and comparisons (its gateways record here)."""


def error_version(exc: BaseException, version: str | None) -> str | None:
    """The version a failed request reached, when whoever raised ``exc`` knew it (the gateway and the
    replica put it in the error's details), else ``version`` (the one asked for)."""
    details = getattr(exc, "details", None)
    found = details.get("model_version") if isinstance(details, dict) else None
    return version if found is None else str(found)


def recorder_for(protocol: str, settings: Settings, *, draw: bool = True) -> RequestRecorder | None:
    """The front end's hook, or None when metrics are off and no access log is sampled (the cost row of
    ``make bench``: nothing is recorded at all, failures not logged either). ``draw=False``: a replica
    behind a gateway, whose requests come with the gateway's sampling decision. It exports spans when
    the process started an OTLP export (observe/otlp.py: start)."""
    sample, spans = settings.access_log_sample, otlp.process_export()
    if not settings.metrics_enabled and sample <= 0 and spans is None:
        return None
    enabled = settings.metrics_enabled
    return RequestRecorder(protocol, enabled=enabled, sample=sample if draw else 0.0, spans=spans)


class BatchMetrics:
    """One batcher's queue times, model call times and rows per call; updated under the batcher's lock."""

    __slots__ = ("queue", "rows", "run")

    def __init__(self) -> None:
        self.queue = Histogram(RUN_BUCKETS)
        self.run = Histogram(RUN_BUCKETS)
        self.rows = Histogram(BATCH_BUCKETS)

    def copy(self) -> BatchMetrics:
        other = BatchMetrics()
        other.queue, other.run, other.rows = self.queue.copy(), self.run.copy(), self.rows.copy()
        return other

    def add(self, other: BatchMetrics) -> None:
        """Count ``other``'s observations here too (two batchers of one version in a process)."""
        self.queue.add(other.queue)
        self.run.add(other.run)
        self.rows.add(other.rows)
