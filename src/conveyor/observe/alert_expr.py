"""The expression language of alert rules: a named indicator over Conveyor's metrics, with its arguments.

    expr      := NAME | NAME "(" arg ("," arg)* ")"
    arg       := NUMBER | WINDOW                      WINDOW := INTEGER ("ms" | "s" | "m" | "h" | "d")

Each indicator (``INDICATORS``) is computed two ways that mean the same: from the control plane's
``StackHistory`` (``values``), and as PromQL over the metric names of docs/metrics.md (``promql``), so a
rule exported with ``conveyor export prometheus`` fires in Prometheus when it fires in Conveyor. Request
numbers are the gateway's (``component="gateway"``): what clients saw, counted once.

A rollout's analysis (control/analysis.py) reads the same indicators over its interval (``build``: any
window in seconds), and any documented ``conveyor_*`` metric by name (``metric_expr``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from conveyor.observe import metrics
from conveyor.observe.history import KEEP_S, Group, StackHistory
from conveyor.observe.series import is_error_code

REQUESTS = "conveyor_requests_total"
REQUEST_DURATION = "conveyor_request_duration_seconds"
RESTARTS = "conveyor_replica_restarts_total"
DRIFT_PSI = "conveyor_drift_psi"
DRIFT_MEAN_SHIFT = "conveyor_drift_mean_shift"
QUEUE_DEPTH = "conveyor_queue_depth"
IN_FLIGHT = "conveyor_in_flight_requests"
HELD = "conveyor_held_requests"
# The gateway's comparisons of two versions' answers (shadow mirroring, canary compare) and the mirrored
# requests themselves (not client requests: not in conveyor_requests_total); ``version`` is the candidate's.
COMPARISONS = "conveyor_comparisons_total"
COMPARISON_DIFFERENCE = "conveyor_comparison_max_abs_difference"
SHADOW_REQUESTS = "conveyor_shadow_requests_total"
SHADOW_DURATION = "conveyor_shadow_request_duration_seconds"
COMPARED = ("agree", "values_differ", "labels_differ")
"""Results of comparisons that had two answers to compare ("failed": one side gave none)."""
LABELS_AGREE = ("agree", "values_differ")
"""Results where the labels (integer, bool and bytes outputs, argmax of float scores) are the same."""
GATEWAY_COUNTED = frozenset({REQUESTS, REQUEST_DURATION})
"""Metrics both the gateway and the replica behind it count: read at the gateway only."""
# The codes is_error_code counts as server errors, as a PromQL regex (a test keeps both in step).
ERROR_CODES_RE = "5..|UNKNOWN|INTERNAL|UNAVAILABLE|DEADLINE_EXCEEDED|DATA_LOSS|UNIMPLEMENTED"
MAX_WINDOW_S = KEEP_S
"""The control plane keeps this much history: a longer window could not be evaluated."""

_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)
_WINDOW = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PERCENTILE = re.compile(r"^(shadow_)?p(50|75|90|95|99|999)_latency$")
_METRIC_NAME = re.compile(r"^conveyor_[A-Za-z0-9_]*$")
GATEWAY = "gateway"

Values = dict[str, float]  # version ("" where the indicator has none) -> value


@dataclass(frozen=True, slots=True)
class Expr:
    """A parsed expression: the indicator, its window (as written and in seconds) and quantile, if any.
    ``metric`` is set for a metric read by name (``metric_expr``): then ``indicator`` is its kind."""

    text: str
    indicator: str
    window: str | None = None
    window_s: float | None = None
    quantile: float | None = None
    metric: str | None = None

    def values(self, history: StackHistory, deployment: str) -> Values:
        """The indicator's value per version of ``deployment`` at the history's latest point."""
        return self._indicator.values(self, history, deployment)

    def promql(self, deployment: str) -> str:
        """The same indicator as a PromQL expression for ``deployment``."""
        return self._indicator.promql(self, deployment)

    @property
    def per_version(self) -> bool:
        return self._indicator.per_version

    @property
    def _indicator(self) -> Indicator:
        return INDICATORS[self.indicator] if self.metric is None else _METRIC_KINDS[self.indicator]


@dataclass(frozen=True, slots=True)
class Indicator:
    params: tuple[str, ...]  # "quantile", "window", in order
    doc: str
    values: Callable[[Expr, StackHistory, str], Values]
    promql: Callable[[Expr, str], str]
    per_version: bool = True


def parse(text: str) -> Expr:
    """The expression ``text`` parsed and checked; ValueError saying what is wrong and what is allowed."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty expression; e.g. error_rate(5m)")
    match = _CALL.match(text)
    if not match:
        raise ValueError(f"cannot read {text!r}: write an indicator and its arguments, e.g. error_rate(5m)")
    name, raw_args = match.group(1), match.group(2)
    percentile = _PERCENTILE.match(name)
    if percentile:  # p99_latency(5m) is latency_quantile(0.99, 5m); shadow_p99_latency: the mirrored ones
        digits = percentile.group(2)
        raw_args = f"0.{digits}, {raw_args}" if raw_args is not None else f"0.{digits}"
        name = f"{percentile.group(1) or ''}latency_quantile"
    indicator = INDICATORS.get(name)
    if indicator is None:
        close = difflib.get_close_matches(name, [*INDICATORS, "p99_latency", "shadow_p99_latency"], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown indicator {name!r}; {hint}known: {', '.join(sorted(INDICATORS))}, pNN_latency, "
            "shadow_pNN_latency"
        )
    args = [a.strip() for a in raw_args.split(",")] if raw_args is not None and raw_args.strip() else []
    if len(args) != len(indicator.params):
        raise ValueError(f"{name} takes {_signature(name, indicator)}, got {len(args)} argument(s)")
    fields: dict[str, object] = {}
    for param, arg in zip(indicator.params, args, strict=True):
        if param == "window":
            fields["window"], fields["window_s"] = arg, window_seconds(arg)
        else:
            fields["quantile"] = _quantile(arg)
    return Expr(text=text.strip(), indicator=name, **fields)  # type: ignore[arg-type]


def window_seconds(text: str) -> float:
    """A window such as ``30s``, ``5m`` or ``1h`` (a whole number and a unit, as PromQL writes ranges)."""
    match = _WINDOW.match(text)
    if not match:
        raise ValueError(f"invalid window {text!r}: a whole number and a unit: ms, s, m, h or d (e.g. 5m)")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"window {text!r} must be longer than 0")
    if seconds > MAX_WINDOW_S:
        raise ValueError(
            f"window {text!r} is longer than the {MAX_WINDOW_S / 60:g}m of metrics the control plane keeps"
        )
    return seconds


def build(indicator: str, *, window_s: float | None = None, quantile: float | None = None) -> Expr:
    """The indicator over a window of ``window_s`` seconds (any length: a rollout's interval of 1.5 s is
    ``1500ms`` in PromQL), with ``quantile`` where it takes one; ValueError for what it does not take."""
    found = INDICATORS.get(indicator)
    if found is None:
        raise ValueError(f"unknown indicator {indicator!r}; known: {', '.join(sorted(INDICATORS))}")
    given = {"window": window_s, "quantile": quantile}
    if {p for p, v in given.items() if v is not None} != set(found.params):
        raise ValueError(f"{indicator} takes {_signature(indicator, found)}")
    window = format_window(window_s) if window_s is not None else None
    args = [window if p == "window" else repr(quantile) for p in found.params]
    text = f"{indicator}({', '.join(str(a) for a in args)})" if args else indicator
    return Expr(text=text, indicator=indicator, window=window, window_s=window_s, quantile=quantile)


def format_window(seconds: float) -> str:
    """``seconds`` as a PromQL range: ``30s``, ``5m``, ``1500ms`` (whole milliseconds, at least 1)."""
    if not seconds > 0:
        raise ValueError(f"window of {seconds:g}s must be longer than 0")
    ms = max(1, round(seconds * 1000))
    if ms % 60_000 == 0:
        return f"{ms // 60_000}m"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def metric_expr(text: str, *, window_s: float, quantile: float = 0.99) -> Expr:
    """What a rollout's analysis reads for a metric: an alert expression as written (its own window), or
    a ``conveyor_*`` metric of docs/metrics.md by name, per version over ``window_s``: a counter's
    per-second rate, a histogram's ``quantile``, a gauge's mean (summed over its series: replicas,
    features). ValueError saying what is wrong, and for what is not per version."""
    name = text.strip() if isinstance(text, str) else text
    if isinstance(name, str) and _METRIC_NAME.match(name):
        metric = metrics.METRICS.get(name)
        if metric is None:
            documented = [n for n, m in metrics.METRICS.items() if "version" in m.labels]
            close = difflib.get_close_matches(name, documented, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown metric {name!r}; {hint}name one of docs/metrics.md with a version label"
            )
        if "version" not in metric.labels or _scope_label(metric) is None:
            raise ValueError(
                f"{name} has no value per version of a deployment: an analysis compares versions"
            )
        if not 0 < quantile < 1:
            raise ValueError(f"quantile {quantile:g} must be between 0 and 1 (exclusive), e.g. 0.99")
        return Expr(
            text=name,
            indicator=metric.kind,
            window=format_window(window_s),
            window_s=window_s,
            quantile=quantile if metric.kind == "histogram" else None,
            metric=name,
        )
    expr = parse(text)
    if not expr.per_version:
        raise ValueError(f"{expr.indicator} has no value per version: an analysis compares versions")
    return expr


def validate_metric_expr(text: str) -> None:
    """ValueError (the message for the spec's error line) when ``text`` is neither an alert expression nor
    a documented per-version ``conveyor_*`` metric (``metric_expr``)."""
    metric_expr(text, window_s=60.0)


def _scope_label(metric: metrics.Metric) -> str | None:
    """The label that names the deployment in ``metric``'s series."""
    return next((label for label in ("model", "deployment") if label in metric.labels), None)


def _quantile(text: str) -> float:
    try:
        q = float(text)
    except ValueError:
        raise ValueError(f"invalid quantile {text!r}: a number between 0 and 1, e.g. 0.99") from None
    if not 0 < q < 1:
        raise ValueError(f"quantile {text} must be between 0 and 1 (exclusive), e.g. 0.99")
    return q


def _signature(name: str, indicator: Indicator) -> str:
    if not indicator.params:
        return "no arguments (write it without parentheses)"
    return f"({', '.join(indicator.params)}), e.g. {name}({', '.join(_EXAMPLE[p] for p in indicator.params)})"


_EXAMPLE = {"window": "5m", "quantile": "0.99"}


# -- PromQL -----------------------------------------------------------------------------------------------


def _selector(
    name: str, deployment: str, label: str = "model", *, gateway: bool = False, extra: str = ""
) -> str:
    parts = [f'component="{GATEWAY}"'] if gateway else []
    parts.append(f'{label}="{_escape(deployment)}"')
    if extra:
        parts.append(extra)
    return f"{name}{{{','.join(parts)}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _requests_rate(e: Expr, d: str, extra: str = "") -> str:
    return f"sum by (model, version) (rate({_selector(REQUESTS, d, gateway=True, extra=extra)}[{e.window}]))"


def _sum(fn: str, name: str, e: Expr, d: str, extra: str = "", *, gateway: bool = False) -> str:
    selector = _selector(name, d, gateway=gateway, extra=extra)
    return f"sum by (model, version) ({fn}({selector}[{e.window}]))"


def _results(results: tuple[str, ...]) -> str:
    return f'result=~"{"|".join(results)}"'


def _ratio_promql(part: str, total: str) -> str:
    # "or ... * 0": a version with requests and no error has ratio 0, as in Conveyor, not no value.
    return f"({part} or {total} * 0) / {total}"


def _error_rate_promql(e: Expr, d: str) -> str:
    return _ratio_promql(_requests_rate(e, d, f'code=~"{ERROR_CODES_RE}"'), _requests_rate(e, d))


def _shadow_error_rate_promql(e: Expr, d: str) -> str:
    errors = _sum("rate", SHADOW_REQUESTS, e, d, f'code=~"{ERROR_CODES_RE}"')
    return _ratio_promql(errors, _sum("rate", SHADOW_REQUESTS, e, d))


def _agreement_promql(agreeing: tuple[str, ...]) -> Callable[[Expr, str], str]:
    def promql(e: Expr, d: str) -> str:
        part = _sum("rate", COMPARISONS, e, d, _results(agreeing))
        return _ratio_promql(part, _sum("rate", COMPARISONS, e, d, _results(COMPARED)))

    return promql


def _histogram_promql(name: str, e: Expr, d: str, label: str = "model", *, gateway: bool = False) -> str:
    buckets = _selector(f"{name}_bucket", d, label, gateway=gateway)
    return f"histogram_quantile({e.quantile!r}, sum by ({label}, version, le) (rate({buckets}[{e.window}])))"


def _quantile_promql(e: Expr, d: str) -> str:
    return _histogram_promql(REQUEST_DURATION, e, d, gateway=True)


# -- values from the StackHistory --------------------------------------------------------------------------


def _gateway(d: str) -> dict[str, str]:
    return {"component": GATEWAY, "model": d}


def _by_version(found: Mapping[Group, float]) -> Values:
    return {group[0]: value for group, value in found.items()}


def _share(
    name: str,
    label: str,
    part: Callable[[str], bool],
    match: Callable[[str], dict[str, str]],
    whole: Callable[[str], bool] = lambda value: True,
) -> Callable[[Expr, StackHistory, str], Values]:
    """Per version, the share of counter ``name``'s increase whose ``label`` is ``part``, out of the
    increase whose ``label`` is ``whole``, over the series ``match`` selects; versions with no increase
    in the whole are left out."""

    def values(e: Expr, h: StackHistory, d: str) -> Values:
        assert e.window_s is not None
        total: dict[str, float] = {}
        counted: dict[str, float] = {}
        for (version, value), n in h.increase(name, e.window_s, ("version", label), match(d)).items():
            if whole(value):
                total[version] = total.get(version, 0.0) + n
                if part(value):
                    counted[version] = counted.get(version, 0.0) + n
        return {v: counted.get(v, 0.0) / n for v, n in total.items() if n > 0}

    return values


def _model(d: str) -> dict[str, str]:
    return {"model": d}


def _comparisons(e: Expr, h: StackHistory, d: str) -> Values:
    assert e.window_s is not None
    out: Values = {}
    for (version, result), n in h.increase(COMPARISONS, e.window_s, ("version", "result"), _model(d)).items():
        if result in COMPARED:
            out[version] = out.get(version, 0.0) + n
    return out


def _latency(e: Expr, h: StackHistory, d: str) -> Values:
    assert e.window_s is not None and e.quantile is not None
    return _by_version(h.quantile(e.quantile, REQUEST_DURATION, e.window_s, ("version",), _gateway(d)))


def _shadow_latency(e: Expr, h: StackHistory, d: str) -> Values:
    assert e.window_s is not None and e.quantile is not None
    return _by_version(h.quantile(e.quantile, SHADOW_DURATION, e.window_s, ("version",), _model(d)))


def _request_rate(e: Expr, h: StackHistory, d: str) -> Values:
    assert e.window_s is not None
    return _by_version(h.rate(REQUESTS, e.window_s, ("version",), _gateway(d)))


def _count(name: str, match: Callable[[str], dict[str, str]]) -> Callable[[Expr, StackHistory, str], Values]:
    def values(e: Expr, h: StackHistory, d: str) -> Values:
        assert e.window_s is not None
        return _by_version(h.increase(name, e.window_s, ("version",), match(d)))

    return values


def _restarts(e: Expr, h: StackHistory, d: str) -> Values:
    assert e.window_s is not None
    return _by_version(h.increase(RESTARTS, e.window_s, ("version",), {"deployment": d}))


def _drift_psi(e: Expr, h: StackHistory, d: str) -> Values:
    return _by_version(h.latest(DRIFT_PSI, ("version",), {"model": d}, agg="max"))


def _drift_mean_shift(e: Expr, h: StackHistory, d: str) -> Values:
    # Largest shift either way: the max of the highest and of minus the lowest.
    high = h.latest(DRIFT_MEAN_SHIFT, ("version",), {"model": d}, agg="max")
    low = h.latest(DRIFT_MEAN_SHIFT, ("version",), {"model": d}, agg="min")
    return {g[0]: max(abs(high[g]), abs(low[g])) for g in high}


def _gauge_sum(name: str) -> Callable[[Expr, StackHistory, str], Values]:
    def values(e: Expr, h: StackHistory, d: str) -> Values:
        return _by_version(h.latest(name, ("version",), {"model": d}))

    return values


def _held(e: Expr, h: StackHistory, d: str) -> Values:
    found = h.latest(HELD, (), {"model": d})
    return {"": found[()]} if () in found else {}


INDICATORS: dict[str, Indicator] = {
    "error_rate": Indicator(
        ("window",),
        "Share of requests answered with a server error (HTTP 5xx; gRPC INTERNAL, UNAVAILABLE, ...), 0..1.",
        _share(REQUESTS, "code", is_error_code, _gateway),
        _error_rate_promql,
    ),
    "latency_quantile": Indicator(
        ("quantile", "window"),
        "Request latency quantile at the gateway, in seconds (p50_latency(W) ... p999_latency(W) for short).",
        _latency,
        _quantile_promql,
    ),
    "request_rate": Indicator(("window",), "Requests per second.", _request_rate, _requests_rate),
    "requests": Indicator(
        ("window",),
        "Requests answered in the window.",
        _count(REQUESTS, _gateway),
        lambda e, d: _sum("increase", REQUESTS, e, d, gateway=True),
    ),
    "shadow_requests": Indicator(
        ("window",),
        "Mirrored requests (shadow) the version answered in the window; not client requests.",
        _count(SHADOW_REQUESTS, _model),
        lambda e, d: _sum("increase", SHADOW_REQUESTS, e, d),
    ),
    "shadow_error_rate": Indicator(
        ("window",),
        "Share of mirrored requests (shadow) the version answered with a server error, 0..1.",
        _share(SHADOW_REQUESTS, "code", is_error_code, _model),
        _shadow_error_rate_promql,
    ),
    "shadow_latency_quantile": Indicator(
        ("quantile", "window"),
        "Latency quantile of mirrored requests (shadow), in seconds (shadow_p99_latency(W) for short).",
        _shadow_latency,
        lambda e, d: _histogram_promql(SHADOW_DURATION, e, d),
    ),
    "comparisons": Indicator(
        ("window",),
        "Answers of the version compared with another version's for the same request (a failed send: not).",
        _comparisons,
        lambda e, d: _sum("increase", COMPARISONS, e, d, _results(COMPARED)),
    ),
    "agreement": Indicator(
        ("window",),
        "Share of compared answers that agree (float outputs within the tolerance, labels equal), 0..1.",
        _share(COMPARISONS, "result", lambda r: r == "agree", _model, COMPARED.__contains__),
        _agreement_promql(("agree",)),
    ),
    "label_agreement": Indicator(
        ("window",),
        "Share of compared answers whose labels (class outputs, argmax of scores) agree, 0..1.",
        _share(COMPARISONS, "result", LABELS_AGREE.__contains__, _model, COMPARED.__contains__),
        _agreement_promql(LABELS_AGREE),
    ),
    "restarts": Indicator(
        ("window",),
        "Replica processes that exited and were replaced (a crash loop).",
        _restarts,
        lambda e, d: (
            f"sum by (deployment, version) (increase({_selector(RESTARTS, d, 'deployment')}[{e.window}]))"
        ),
    ),
    "drift_psi": Indicator(
        (),
        "Largest population stability index over the input features (0: same distribution).",
        _drift_psi,
        lambda e, d: f"max by (model, version) ({_selector(DRIFT_PSI, d)})",
    ),
    "drift_mean_shift": Indicator(
        (),
        "Largest shift of a feature's mean, in reference standard deviations (either way).",
        _drift_mean_shift,
        lambda e, d: f"max by (model, version) (abs({_selector(DRIFT_MEAN_SHIFT, d)}))",
    ),
    "queue_depth": Indicator(
        (),
        "Requests waiting in the replicas' batcher queues.",
        _gauge_sum(QUEUE_DEPTH),
        lambda e, d: f"sum by (model, version) ({_selector(QUEUE_DEPTH, d)})",
    ),
    "in_flight": Indicator(
        (),
        "Requests the replicas' batchers hold, queued or running.",
        _gauge_sum(IN_FLIGHT),
        lambda e, d: f"sum by (model, version) ({_selector(IN_FLIGHT, d)})",
    ),
    "held_requests": Indicator(
        (),
        "Requests the gateway holds while no replica is ready (scale to zero, a start).",
        _held,
        lambda e, d: f"sum by (model) ({_selector(HELD, d)})",
        per_version=False,
    ),
}


# -- a metric by name (metric_expr): per version of the deployment ----------------------------------------


def _metric_scope(e: Expr, d: str) -> tuple[str, dict[str, str], bool]:
    """The label naming the deployment, the series to read, and whether only the gateway's count."""
    assert e.metric is not None
    label = _scope_label(metrics.METRICS[e.metric]) or "model"
    gateway = e.metric in GATEWAY_COUNTED
    return label, {**({"component": GATEWAY} if gateway else {}), label: d}, gateway


def _metric_values(e: Expr, h: StackHistory, d: str) -> Values:
    assert e.metric is not None and e.window_s is not None
    _, match, _ = _metric_scope(e, d)
    if e.indicator == "histogram":
        assert e.quantile is not None
        return _by_version(h.quantile(e.quantile, e.metric, e.window_s, ("version",), match))
    read = h.rate if e.indicator == "counter" else h.mean
    return _by_version(read(e.metric, e.window_s, ("version",), match))


def _metric_promql(e: Expr, d: str) -> str:
    assert e.metric is not None
    label, _, gateway = _metric_scope(e, d)
    if e.indicator == "histogram":
        return _histogram_promql(e.metric, e, d, label, gateway=gateway)
    over_time = "rate" if e.indicator == "counter" else "avg_over_time"
    selector = _selector(e.metric, d, label, gateway=gateway)
    return f"sum by ({label}, version) ({over_time}({selector}[{e.window}]))"


_METRIC_KINDS: dict[str, Indicator] = {
    "counter": Indicator(("window",), "Per-second rate over the window.", _metric_values, _metric_promql),
    "histogram": Indicator(
        ("quantile", "window"), "Quantile over the window.", _metric_values, _metric_promql
    ),
    "gauge": Indicator(
        ("window",), "Mean over the window of the sum of its series.", _metric_values, _metric_promql
    ),
}
