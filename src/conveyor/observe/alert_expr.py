"""The expression language of alert rules: a named indicator over Conveyor's metrics, with its arguments.

    expr      := NAME | NAME "(" arg ("," arg)* ")"
    arg       := NUMBER | WINDOW                      WINDOW := INTEGER ("ms" | "s" | "m" | "h" | "d")

Each indicator (``INDICATORS``) is computed two ways that mean the same: from the control plane's
``StackHistory`` (``values``), and as PromQL over the metric names of docs/metrics.md (``promql``), so a
rule exported with ``conveyor export prometheus`` fires in Prometheus when it fires in Conveyor. Request
numbers are the gateway's (``component="gateway"``): what clients saw, counted once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

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
# The codes is_error_code counts as server errors, as a PromQL regex (a test keeps both in step).
ERROR_CODES_RE = "5..|UNKNOWN|INTERNAL|UNAVAILABLE|DEADLINE_EXCEEDED|DATA_LOSS|UNIMPLEMENTED"
MAX_WINDOW_S = KEEP_S
"""The control plane keeps this much history: a longer window could not be evaluated."""

_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)
_WINDOW = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PERCENTILE = re.compile(r"^p(50|75|90|95|99|999)_latency$")
GATEWAY = "gateway"

Values = dict[str, float]  # version ("" where the indicator has none) -> value


@dataclass(frozen=True, slots=True)
class Expr:
    """A parsed expression: the indicator, its window (as written and in seconds) and quantile, if any."""

    text: str
    indicator: str
    window: str | None = None
    window_s: float | None = None
    quantile: float | None = None

    def values(self, history: StackHistory, deployment: str) -> Values:
        """The indicator's value per version of ``deployment`` at the history's latest point."""
        return INDICATORS[self.indicator].values(self, history, deployment)

    def promql(self, deployment: str) -> str:
        """The same indicator as a PromQL expression for ``deployment``."""
        return INDICATORS[self.indicator].promql(self, deployment)

    @property
    def per_version(self) -> bool:
        return INDICATORS[self.indicator].per_version


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
    if percentile:  # p99_latency(5m) is latency_quantile(0.99, 5m)
        digits = percentile.group(1)
        raw_args = f"0.{digits}, {raw_args}" if raw_args is not None else f"0.{digits}"
        name = "latency_quantile"
    indicator = INDICATORS.get(name)
    if indicator is None:
        close = difflib.get_close_matches(name, [*INDICATORS, "p99_latency"], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown indicator {name!r}; {hint}known: {', '.join(sorted(INDICATORS))}, pNN_latency"
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


def _error_rate_promql(e: Expr, d: str) -> str:
    # "or ... * 0": a version with requests and no error has ratio 0, as in Conveyor, not no value.
    errors = _requests_rate(e, d, f'code=~"{ERROR_CODES_RE}"')
    total = _requests_rate(e, d)
    return f"({errors} or {total} * 0) / {total}"


def _quantile_promql(e: Expr, d: str) -> str:
    buckets = _selector(f"{REQUEST_DURATION}_bucket", d, gateway=True)
    return f"histogram_quantile({e.quantile!r}, sum by (model, version, le) (rate({buckets}[{e.window}])))"


# -- values from the StackHistory --------------------------------------------------------------------------


def _gateway(d: str) -> dict[str, str]:
    return {"component": GATEWAY, "model": d}


def _by_version(found: Mapping[Group, float]) -> Values:
    return {group[0]: value for group, value in found.items()}


def _error_rate(e: Expr, h: StackHistory, d: str) -> Values:
    assert e.window_s is not None
    counts = h.increase(REQUESTS, e.window_s, ("version", "code"), _gateway(d))
    total: dict[str, float] = {}
    failed: dict[str, float] = {}
    for (version, code), n in counts.items():
        total[version] = total.get(version, 0.0) + n
        if is_error_code(code):
            failed[version] = failed.get(version, 0.0) + n
    return {v: failed.get(v, 0.0) / n for v, n in total.items() if n > 0}


def _latency(e: Expr, h: StackHistory, d: str) -> Values:
    assert e.window_s is not None and e.quantile is not None
    return _by_version(h.quantile(e.quantile, REQUEST_DURATION, e.window_s, ("version",), _gateway(d)))


def _request_rate(e: Expr, h: StackHistory, d: str) -> Values:
    assert e.window_s is not None
    return _by_version(h.rate(REQUESTS, e.window_s, ("version",), _gateway(d)))


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
        _error_rate,
        _error_rate_promql,
    ),
    "latency_quantile": Indicator(
        ("quantile", "window"),
        "Request latency quantile at the gateway, in seconds (p50_latency(W) ... p999_latency(W) for short).",
        _latency,
        _quantile_promql,
    ),
    "request_rate": Indicator(("window",), "Requests per second.", _request_rate, _requests_rate),
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
