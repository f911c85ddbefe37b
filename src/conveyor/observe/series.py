"""What the dashboard charts for one deployment, per version: request rate, error ratio, p50 and p99 latency
over time, and the latest drift per feature, all read from the control plane's ``StackHistory``.

Client-visible numbers come from the gateway (``component="gateway"``): under ``conveyor up`` a request is
counted by the gateway and again by the replica that ran it, and only the gateway sees what clients see.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from conveyor.observe.history import StackHistory, bucket_quantile

REQUESTS = "conveyor_requests_total"
DURATION = "conveyor_request_duration_seconds"
DRIFT_PSI = "conveyor_drift_psi"
DRIFT_MEAN_SHIFT = "conveyor_drift_mean_shift"
MAX_POINTS = 600
"""At most this many points per series, whatever ``since`` and ``step`` ask (a wider step is used)."""
CACHED_POINTS = 20_000
"""Computed points kept per history (all deployments and windows together), the least recently used
dropped first: a deployment's 10 minutes at 2 s are 300."""
Point = dict[str, dict[str, float | None]]  # version -> rate, error_ratio, p50, p99
_CACHE: weakref.WeakKeyDictionary[StackHistory, OrderedDict[tuple[Any, ...], Point]] = (
    weakref.WeakKeyDictionary()
)
_CACHE_LOCK = threading.Lock()
# gRPC codes that mean the server failed (the REST side: any 5xx). A client's mistake (INVALID_ARGUMENT,
# NOT_FOUND, ...) and backpressure (RESOURCE_EXHAUSTED, as 429 on REST) are answers, not errors.
_GRPC_SERVER_ERRORS = frozenset(
    {"INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN", "DATA_LOSS", "UNIMPLEMENTED"}
)


def is_error_code(code: str) -> bool:
    """Whether a ``code`` label (an HTTP status or a gRPC code name) is a server error."""
    if code.isdigit():
        return int(code) >= 500
    return code in _GRPC_SERVER_ERRORS


def deployment_series(
    history: StackHistory,
    match: Mapping[str, str],
    *,
    since_s: float,
    step_s: float,
    window_s: float,
) -> dict[str, Any]:
    """Per version, at points ``step_s`` apart over the last ``since_s`` seconds: ``rate`` (requests/s),
    ``error_ratio`` (server errors / requests), ``p50`` and ``p99`` (seconds), each over the ``window_s``
    before the point. A version without requests in a window has rate 0 and None for the rest; None for
    all where it has no series yet. ``t`` holds the points' history times and ``now`` the latest one, so a
    client can ask again with a short ``since`` and append."""
    step_s = max(step_s, since_s / MAX_POINTS)
    times = _spaced(history.times(since_s), step_s)
    latest = history.last_time
    points = [_cached_point(history, match, t, window_s, final=t != latest) for t in times]
    versions = sorted({v for p in points for v in p}, key=_version_key)
    series: dict[str, dict[str, list[float | None]]] = {}
    for version in versions:
        columns: dict[str, list[float | None]] = {k: [] for k in ("rate", "error_ratio", "p50", "p99")}
        for p in points:
            values = p.get(version, {})
            for key, column in columns.items():
                column.append(values.get(key))
        series[version] = columns
    return {"now": history.last_time, "t": times, "versions": series}


def drift(history: StackHistory, models: Iterable[str]) -> dict[str, dict[str, dict[str, float]]]:
    """The latest drift gauges of ``models`` (model labels: the deployment's name and its registry model's):
    ``{version: {feature: {"psi": ..., "mean_shift": ...}}}``, the worst replica of each version."""
    wanted = set(models)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, key in ((DRIFT_PSI, "psi"), (DRIFT_MEAN_SHIFT, "mean_shift")):
        by = ("model", "version", "feature")
        for (model, version, feature), value in history.latest(name, by=by, agg="max").items():
            if model in wanted:
                out.setdefault(version, {}).setdefault(feature, {})[key] = value
    return out


def _cached_point(
    history: StackHistory, match: Mapping[str, str], t: float, window_s: float, *, final: bool
) -> Point:
    """``_point``, computed once per history, match, time and window: a point's values depend only on the
    points at or before it, which never change, and each costs a scan of the history (a page polling
    every 2 s then costs one new point per refresh, not the whole chart again). The latest point may still
    get a twin at the same time, so it is not kept."""
    key = (tuple(sorted(match.items())), window_s, t)
    with _CACHE_LOCK:
        cache = _CACHE.setdefault(history, OrderedDict())
        found = cache.get(key)
        if found is not None:
            cache.move_to_end(key)
            return found
    point = _point(history, match, t, window_s)
    if final:
        with _CACHE_LOCK:
            cache[key] = point
            while len(cache) > CACHED_POINTS:
                cache.popitem(last=False)
    return point


def _point(history: StackHistory, match: Mapping[str, str], t: float, window_s: float) -> Point:
    """Each version's values over the ``window_s`` ending at ``t``."""
    totals: dict[str, float] = {}
    errors: dict[str, float] = {}
    for (version, code), rate in history.rate(REQUESTS, window_s, ("version", "code"), match, end=t).items():
        totals[version] = totals.get(version, 0.0) + rate
        if is_error_code(code):
            errors[version] = errors.get(version, 0.0) + rate
    buckets: dict[str, list[tuple[float, float]]] = {}
    grown = history.increase(f"{DURATION}_bucket", window_s, ("version", "le"), match, end=t)
    for (version, le), n in grown.items():
        buckets.setdefault(version, []).append((float(le), n))
    out: Point = {}
    for version, total in totals.items():
        pairs = buckets.get(version, [])
        out[version] = {
            "rate": total,
            "error_ratio": errors.get(version, 0.0) / total if total else None,
            "p50": bucket_quantile(0.5, pairs),
            "p99": bucket_quantile(0.99, pairs),
        }
    return out


def _spaced(times: list[float], step_s: float) -> list[float]:
    """The latest time and earlier ones at least ``step_s`` apart, oldest first."""
    out: list[float] = []
    for t in reversed(times):
        if not out or out[-1] - t >= step_s * 0.999:
            out.append(t)
    return out[::-1]


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)
