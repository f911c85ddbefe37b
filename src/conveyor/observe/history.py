"""The recent metrics of the whole stack, as the control plane scraped them: what alerts, the dashboard and
``describe`` read (rates, quantiles and gauges over a window), without a Prometheus server.

Each scrape adds one point: every sample of every process, with the ``component`` and ``instance`` labels
the scraper gave it. Points older than ``keep_s`` are dropped, and never more than ``max_points`` are kept.
Counters are read as Prometheus reads them: per series (its full label set), a value lower than the one
before is a restart and counts from zero, and a series that appears after the first point (a new replica)
counts its first value whole; the first point is the baseline. Then series are summed by the labels asked
for.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs: one series of a metric
Sample = tuple[str, Mapping[str, str], float]
Group = tuple[str, ...]
KEEP_S = 900.0
MAX_POINTS = 1000


@dataclass(frozen=True, slots=True)
class _Point:
    t: float
    metrics: dict[str, dict[Labels, float]]  # sample name -> series -> value


def samples_from_text(text: str, **extra: str) -> list[Sample]:
    """The samples of a Prometheus text exposition, each with ``extra`` labels added (component, instance)."""
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append((s.name, {**s.labels, **extra} if extra else s.labels, float(s.value)))
    return out


class StackHistory:
    """A bounded window of scraped points; every query reads the latest point (or the one at ``end``)."""

    def __init__(self, keep_s: float = KEEP_S, max_points: int = MAX_POINTS) -> None:
        self.keep_s = keep_s
        self._points: deque[_Point] = deque(maxlen=max_points)
        self._interned: dict[Labels, Labels] = {}  # one tuple per series across points
        self._lock = threading.Lock()

    def add(self, t: float, samples: Iterable[Sample]) -> None:
        """One scrape of the stack at time ``t`` (monotonic or wall clock, as long as it only grows)."""
        metrics: dict[str, dict[Labels, float]] = {}
        seen: set[Labels] = set()
        for name, labels, value in samples:
            key = tuple(sorted(labels.items()))
            key = self._interned.setdefault(key, key)
            seen.add(key)
            metrics.setdefault(name, {})[key] = value
        with self._lock:
            if self._points and t < self._points[-1].t:
                raise ValueError(f"history points must come in time order: {t} after {self._points[-1].t}")
            self._points.append(_Point(t, metrics))
            while self._points and t - self._points[0].t > self.keep_s:
                self._points.popleft()
            if len(self._interned) > 4 * max(len(seen), 1024):  # series that went away: forget them
                self._interned = {k: k for k in seen}

    @property
    def last_time(self) -> float | None:
        with self._lock:
            return self._points[-1].t if self._points else None

    def times(self, since_s: float | None = None) -> list[float]:
        """The times of the points kept (within ``since_s`` of the latest)."""
        with self._lock:
            if not self._points:
                return []
            last = self._points[-1].t
            return [p.t for p in self._points if since_s is None or last - p.t <= since_s]

    def increase(
        self,
        name: str,
        window_s: float,
        by: Iterable[str] = (),
        match: Mapping[str, str] | None = None,
        *,
        end: float | None = None,
    ) -> dict[Group, float]:
        """How much counter ``name`` grew over the window ending at the latest point (or ``end``), per
        group."""
        by = tuple(by)
        kept = self._upto(end)
        points = _since_baseline(kept, window_s)
        if len(points) < 2:
            return {}
        base = len(kept) - len(points)
        prev = dict(points[0].metrics.get(name, {}))
        wanted: dict[Labels, Group | None] = {}  # series -> its group, None when ``match`` leaves it out
        out: dict[Group, float] = {}
        for point in points[1:]:
            series = point.metrics.get(name, {})
            for key, value in series.items():
                if key not in wanted:
                    wanted[key] = _group(key, by) if _matches(key, match) else None
                group = wanted[key]
                if group is None:
                    continue
                if key not in prev:
                    # Missing at the baseline: new (a replica that started), or one missed scrape of its
                    # process, which must not make its next value count whole. Only such series look back.
                    for older in reversed(kept[:base]):
                        found = older.metrics.get(name, {}).get(key)
                        if found is not None:
                            prev[key] = found
                            break
                before = prev.get(key)
                # New, or restarted (its counter began again at zero): whole.
                grew = value if before is None or value < before else value - before
                out[group] = out.get(group, 0.0) + grew
            prev.update(series)
        return out

    def rate(
        self,
        name: str,
        window_s: float,
        by: Iterable[str] = (),
        match: Mapping[str, str] | None = None,
        *,
        end: float | None = None,
    ) -> dict[Group, float]:
        """Per-second increase over the window (the time the points actually span, when shorter)."""
        points = self._window(window_s, end)
        if len(points) < 2:
            return {}
        span = points[-1].t - points[0].t
        if span <= 0:
            return {}
        return {g: v / span for g, v in self.increase(name, window_s, by, match, end=end).items()}

    def latest(
        self,
        name: str,
        by: Iterable[str] = (),
        match: Mapping[str, str] | None = None,
        agg: Literal["sum", "max", "min"] = "sum",
        *,
        end: float | None = None,
    ) -> dict[Group, float]:
        """A gauge's value at the latest point (or ``end``), combined per group."""
        by = tuple(by)
        points = self._window(0.0, end)
        if not points:
            return {}
        combine = _COMBINE[agg]
        out: dict[Group, float] = {}
        for group, value in _in_groups(points[-1].metrics.get(name, {}), by, match):
            out[group] = combine(out[group], value) if group in out else value
        return out

    def mean(
        self,
        name: str,
        window_s: float,
        by: Iterable[str] = (),
        match: Mapping[str, str] | None = None,
        *,
        end: float | None = None,
    ) -> dict[Group, float]:
        """A gauge's mean over the window ending at the latest point (or ``end``): at each point after the
        window's start its series are summed per group, and the sums averaged over the points that have
        the group (PromQL's ``sum by (...) (avg_over_time(...))`` while the series stay)."""
        by = tuple(by)
        kept = self._upto(end)
        if not kept:
            return {}
        start = kept[-1].t - window_s
        totals: dict[Group, float] = {}
        counts: dict[Group, int] = {}
        for point in kept:
            if point.t <= start:
                continue
            sums: dict[Group, float] = {}
            for group, value in _in_groups(point.metrics.get(name, {}), by, match):
                sums[group] = sums.get(group, 0.0) + value
            for group, value in sums.items():
                totals[group] = totals.get(group, 0.0) + value
                counts[group] = counts.get(group, 0) + 1
        return {g: totals[g] / counts[g] for g in totals}

    def quantile(
        self,
        q: float,
        hist_name: str,
        window_s: float,
        by: Iterable[str] = (),
        match: Mapping[str, str] | None = None,
        *,
        end: float | None = None,
    ) -> dict[Group, float]:
        """The q-quantile of histogram ``hist_name`` over the window, per group, interpolated within its
        bucket as Prometheus's histogram_quantile does; groups without observations are left out."""
        by = tuple(by)
        grown = self.increase(f"{hist_name}_bucket", window_s, (*by, "le"), match, end=end)
        buckets: dict[Group, list[tuple[float, float]]] = {}
        for group, count in grown.items():
            buckets.setdefault(group[:-1], []).append((float(group[-1]), count))
        out: dict[Group, float] = {}
        for group, pairs in buckets.items():
            value = bucket_quantile(q, pairs)
            if value is not None:
                out[group] = value
        return out

    def series(
        self,
        name: str,
        step_s: float,
        since_s: float,
        by: Iterable[str] = (),
        match: Mapping[str, str] | None = None,
        kind: Literal["rate", "gauge"] = "rate",
    ) -> list[tuple[float, dict[Group, float]]]:
        """(time, value per group) at every point of the last ``since_s`` seconds: the counter's rate over
        ``step_s`` before that point, or the gauge's value there."""
        by = tuple(by)
        if kind == "rate":
            return [(t, self.rate(name, step_s, by, match, end=t)) for t in self.times(since_s)[1:]]
        return [(t, self.latest(name, by, match, end=t)) for t in self.times(since_s)]

    def _window(self, window_s: float, end: float | None) -> list[_Point]:
        return _since_baseline(self._upto(end), window_s)

    def _upto(self, end: float | None) -> list[_Point]:
        """The points at or before ``end`` (all of them when None), oldest first."""
        with self._lock:
            return [p for p in self._points if end is None or p.t <= end]


def _since_baseline(points: list[_Point], window_s: float) -> list[_Point]:
    """The points from the last one at or before ``latest - window_s`` (the baseline) to the latest."""
    if not points:
        return []
    start = points[-1].t - window_s
    first = 0
    for i, p in enumerate(points):
        if p.t > start:
            break
        first = i
    return points[first:]


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """histogram_quantile over (upper bound, cumulative count) pairs; None without observations."""
    pairs = sorted(buckets)
    if not pairs or pairs[-1][1] <= 0:
        return None
    total = pairs[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in pairs:
        if count >= rank:
            if math.isinf(upper):  # past the last finite bucket: its bound is the best answer
                return lower_bound
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper, count
    return pairs[-1][0]


def _in_groups(
    series: Mapping[Labels, float], by: tuple[str, ...], match: Mapping[str, str] | None
) -> Iterator[tuple[Group, float]]:
    """(group, value) of each series ``match`` keeps."""
    for key, value in series.items():
        if _matches(key, match):
            yield _group(key, by), value


def _matches(key: Labels, match: Mapping[str, str] | None) -> bool:
    if not match:
        return True
    labels = dict(key)
    return all(labels.get(k) == v for k, v in match.items())


def _group(key: Labels, by: tuple[str, ...]) -> Group:
    if not by:
        return ()
    labels = dict(key)
    return tuple(labels.get(b, "") for b in by)


def _add(a: float, b: float) -> float:
    return a + b


def _max(a: float, b: float) -> float:
    return max(a, b)


def _min(a: float, b: float) -> float:
    return min(a, b)


_COMBINE: dict[str, Callable[[float, float], float]] = {"sum": _add, "max": _max, "min": _min}
