"""A rollout's analysis: one judgement of the candidate version, over one window, against absolute bounds
and against the stable version (docs/rollouts.md, "Analysis").

``analyse`` is a pure function of what a ``MetricsProvider`` answers: the control plane's own history
(``HistoryProvider``, the default) or a Prometheus server (``PrometheusProvider``). Each check passes, fails,
is inconclusive (too few requests, no value, the provider could not answer: the reason is in its detail)
or is skipped (a comparison with stable when stable has too few requests). The verdict fails when a check
fails, else is inconclusive when one is, else passes. Nothing raises out of ``analyse``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, Literal, Protocol

import httpx

from conveyor import errors
from conveyor.observe.alert_expr import Expr, build, metric_expr
from conveyor.observe.history import StackHistory
from conveyor.spec.rollout import Analysis, AnalysisMetric

log = logging.getLogger("conveyor.rollouts")

Status = Literal["pass", "fail", "inconclusive", "skipped"]
VerdictStatus = Literal["pass", "fail", "inconclusive"]
Values = dict[str, float]  # version -> value


@dataclass(frozen=True, slots=True)
class Check:
    """One check of one window. ``candidate`` and ``stable`` are in the unit of ``bound`` (percent,
    milliseconds, a ratio, the metric's own); ``detail`` says why, e.g. ``80.1% < 99%``."""

    name: str
    status: Status
    candidate: float | None
    stable: float | None
    bound: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "candidate": _finite(self.candidate),
            "stable": _finite(self.stable),
            "bound": self.bound,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    status: VerdictStatus
    checks: tuple[Check, ...]
    requests: dict[str, float]
    """version -> requests in the window that its checks read (shadow: the candidate's mirrored ones)."""
    window_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "summary": self.summary(),
            "checks": [c.to_dict() for c in self.checks],
            "requests": {v: _finite(n) for v, n in self.requests.items()},
            "windowSeconds": self.window_s,
        }

    def summary(self) -> str:
        """One line: the status and the checks that decided it, e.g. ``fail: success rate 80.1% < 99%``."""
        if self.status == "pass":
            shown = [c for c in self.checks if c.status == "pass"]
        else:
            shown = [c for c in self.checks if c.status == self.status]
            if self.status == "inconclusive" and shown and shown[0].name in (REQUESTS, MIRRORED):
                shown = shown[:1]  # too few requests: every other check says so too
        if not shown:
            return f"{self.status}: no checks"
        return f"{self.status}: " + "; ".join(f"{c.name} {c.detail}" for c in shown)


class MetricsProvider(Protocol):
    async def values(self, expr: Expr, deployment: str) -> dict[str, float]:
        """``expr`` per version of ``deployment`` over its window ending now; errors.Unavailable (with the
        reason) when the source cannot answer."""
        ...


class HistoryProvider:
    """Conveyor's own metrics: the control plane's StackHistory, the window ending at its latest point."""

    def __init__(self, history: StackHistory) -> None:
        self.history = history

    async def values(self, expr: Expr, deployment: str) -> dict[str, float]:
        return expr.values(self.history, deployment)


class PrometheusProvider:
    """A Prometheus server's instant queries (``GET {url}/api/v1/query``) with each expression's PromQL,
    which groups by ``version``. Use it as an async context manager, or ``aclose`` it."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._client = client or httpx.AsyncClient()
        self._owned = client is None

    async def values(self, expr: Expr, deployment: str) -> dict[str, float]:
        where = f"Prometheus at {self.url}"
        try:
            answer = await self._client.get(
                f"{self.url}/api/v1/query", params={"query": expr.promql(deployment)}, timeout=self.timeout_s
            )
        except httpx.TimeoutException:
            raise errors.Unavailable(f"{where} did not answer within {self.timeout_s:g}s") from None
        except httpx.HTTPError as exc:
            raise errors.Unavailable(f"{where} cannot be reached: {str(exc) or type(exc).__name__}") from None
        try:
            body = answer.json()
        except ValueError:
            raise errors.Unavailable(f"{where} answered HTTP {answer.status_code}, not JSON") from None
        if not isinstance(body, dict) or answer.status_code != 200 or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise errors.Unavailable(f"{where} answered HTTP {answer.status_code}: {error or 'no result'}")
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise errors.Unavailable(f"{where} answered a {data.get('resultType')!r}, not a vector")
        out: dict[str, float] = {}
        for item in data.get("result", []):
            try:
                value = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                raise errors.Unavailable(f"{where} answered a sample without a value: {item!r}") from None
            if not math.isnan(value):  # 0/0: no requests in the window, as the history leaves it out
                out[str(item.get("metric", {}).get("version", ""))] = value
        return out

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()

    async def __aenter__(self) -> PrometheusProvider:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


REQUESTS = "requests"
MIRRORED = "mirrored requests"


async def analyse(
    analysis: Analysis,
    provider: MetricsProvider,
    deployment: str,
    *,
    stable: str,
    candidate: str,
    window_s: float,
    shadow: bool = False,
) -> Verdict:
    """Judge ``candidate`` against ``analysis``'s bounds and against ``stable`` over the last ``window_s``
    seconds. ``shadow``: the candidate answers mirrored requests only, so its requests, success rate and
    latency come from the shadow metrics."""
    return await _Judge(analysis, provider, deployment, stable, candidate, window_s, shadow).run()


@dataclass
class _Judge:
    """One analysis: what it asked the provider, and the checks it makes of the answers."""

    a: Analysis
    provider: MetricsProvider
    deployment: str
    stable: str
    candidate: str
    window_s: float
    shadow: bool
    read: dict[str, Values | str] = field(default_factory=dict)  # expression text -> values, or why none

    @property
    def min(self) -> int:
        return self.a.min_requests

    def expr(self, indicator: str, quantile: float | None = None) -> Expr:
        return build(indicator, window_s=self.window_s, quantile=quantile)

    def cand_expr(self, indicator: str, quantile: float | None = None) -> Expr:
        """The candidate's side: in shadow mode the shadow twin of a request indicator."""
        return self.expr(f"shadow_{indicator}" if self.shadow else indicator, quantile)

    async def run(self) -> Verdict:
        a = self.a
        counts = [self.expr("requests"), self.cand_expr("requests")]
        errors_ = [self.expr("error_rate"), self.cand_expr("error_rate")]
        p99 = [self.expr("latency_quantile", 0.99), self.cand_expr("latency_quantile", 0.99)]
        planned: list[tuple[Callable[[], Check], list[Expr]]] = [(self.requests_check, counts)]
        if a.success_rate is not None:
            planned.append((partial(self.success_check, a.success_rate), errors_))
        if a.max_error_rate_increase is not None:
            planned.append((partial(self.error_increase_check, a.max_error_rate_increase), errors_))
        if a.p99_latency_ms is not None:
            planned.append((partial(self.p99_check, a.p99_latency_ms), p99))
        if a.max_latency_ratio is not None:
            planned.append((partial(self.latency_ratio_check, a.max_latency_ratio), p99))
        if a.agreement is not None and (self.shadow or a.compare > 0):
            compared = [self.expr("comparisons"), self.expr("agreement")]
            planned.append((partial(self.agreement_check, a.agreement), compared))
        if a.max_drift_psi is not None:
            planned.append((partial(self.drift_check, a.max_drift_psi), [build("drift_psi")]))
        for metric in a.metrics:
            try:
                expr = metric_expr(metric.expr, window_s=self.window_s, quantile=metric.quantile)
            except ValueError as exc:  # the spec validator refuses these; an old stored spec may hold one
                planned.append((partial(_unreadable, metric, str(exc)), []))
                continue
            planned.append((partial(self.metric_check, metric, expr), [expr]))
        wanted = {e.text: e for _, exprs in planned for e in exprs}
        await asyncio.gather(*(self.fetch(e) for e in wanted.values()))
        checks = tuple(check() for check, _ in planned)
        statuses = {c.status for c in checks}
        status: VerdictStatus = (
            "fail" if "fail" in statuses else "inconclusive" if "inconclusive" in statuses else "pass"
        )
        requests: dict[str, float] = {}
        for version, side in ((self.stable, counts[0]), (self.candidate, counts[1])):
            found = self.read.get(side.text)
            if isinstance(found, dict):
                requests[version] = found.get(version, 0.0)
        return Verdict(status, checks, requests, self.window_s)

    async def fetch(self, expr: Expr) -> None:
        try:
            found = await self.provider.values(expr, self.deployment)
            self.read[expr.text] = {str(v): float(x) for v, x in found.items()}
        except errors.ConveyorError as exc:
            self.read[expr.text] = exc.message
        except Exception as exc:  # a provider's bug must not stop the rollout's judgement: inconclusive
            log.exception("reading %s for the analysis of %s failed", expr.text, self.deployment)
            self.read[expr.text] = f"reading {expr.text} failed: {exc!r}"

    # -- what the queries said ------------------------------------------------------------------------

    def answer(self, expr: Expr) -> Values | str:
        """What the provider answered for ``expr``, or why it did not."""
        return self.read.get(expr.text, f"{expr.text} was not read")

    def value(self, expr: Expr, version: str) -> float | str:
        """``expr``'s value for ``version``, or why there is none."""
        found = self.answer(expr)
        if isinstance(found, str):
            return found
        if version not in found:
            return f"no value of {expr.text} for version {version} in the window"
        return found[version]

    def candidate_gate(self) -> str | None:
        """Why the candidate's checks cannot be judged in this window, or None."""
        found = self.answer(self.cand_expr("requests"))
        if isinstance(found, str):
            return found
        n = found.get(self.candidate, 0.0)
        if n < self.min:
            what = "mirrored requests" if self.shadow else "requests"
            return f"candidate has {_num(n)} {what} in the window, fewer than minRequests {self.min}"
        return None

    def stable_gate(self) -> tuple[Status, str] | None:
        """Why a comparison with stable cannot be made in this window (skipped, or inconclusive when the
        provider did not answer), or None."""
        found = self.answer(self.expr("requests"))
        if isinstance(found, str):
            return "inconclusive", found
        n = found.get(self.stable, 0.0)
        if n < self.min:
            return (
                "skipped",
                f"stable has {_num(n)} requests in the window, fewer than minRequests {self.min}",
            )
        return None

    def both(self, live: Expr, cand: Expr) -> tuple[float | str, float | str]:
        return self.value(cand, self.candidate), self.value(live, self.stable)

    # -- the checks -----------------------------------------------------------------------------------

    def requests_check(self) -> Check:
        name = MIRRORED if self.shadow else REQUESTS
        found = self.answer(self.cand_expr("requests"))
        stable = self.answer(self.expr("requests"))
        stable_n = stable.get(self.stable, 0.0) if isinstance(stable, dict) else None
        bound = f"≥ {self.min}"
        if isinstance(found, str):
            return Check(name, "inconclusive", None, stable_n, bound, found)
        n = found.get(self.candidate, 0.0)
        if n < self.min:
            return Check(name, "inconclusive", n, stable_n, bound, f"{_num(n)} < {self.min} (minRequests)")
        return Check(name, "pass", n, stable_n, bound, f"{_num(n)} ≥ {self.min}")

    def success_check(self, limit: float) -> Check:
        cand, stable = self.both(self.expr("error_rate"), self.cand_expr("error_rate"))
        return self.absolute("success rate", _percent_ok(cand), _percent_ok(stable), "≥", limit, "%")

    def error_increase_check(self, limit: float) -> Check:
        cand, stable = self.both(self.expr("error_rate"), self.cand_expr("error_rate"))
        c = cand * 100 if isinstance(cand, float) else cand
        s = stable * 100 if isinstance(stable, float) else stable
        bound = f"≤ +{_num(limit)} pp over stable"
        early = self.early("error rate increase", c, s, bound, relative=True)
        if early is not None:
            return early
        assert isinstance(c, float) and isinstance(s, float)
        increase = c - s
        ok = _le(increase, limit)
        shown = (
            f"{_num(c)}% vs stable {_num(s)}%: {_signed(increase)} pp {'≤' if ok else '>'} +{_num(limit)} pp"
        )
        return Check("error rate increase", "pass" if ok else "fail", c, s, bound, shown)

    def p99_check(self, limit: float) -> Check:
        cand, stable = self.both(*self.p99_exprs())
        return self.absolute("p99 latency", _ms(cand), _ms(stable), "≤", limit, " ms")

    def latency_ratio_check(self, limit: float) -> Check:
        cand, stable = self.both(*self.p99_exprs())
        c, s = _ms(cand), _ms(stable)
        bound = f"≤ {_num(limit)}× stable"
        early = self.early("latency ratio", c, s, bound, relative=True)
        if early is not None:
            return early
        assert isinstance(c, float) and isinstance(s, float)
        if s <= 0:
            return Check("latency ratio", "skipped", c, s, bound, "stable's p99 is 0: no ratio")
        ratio = c / s
        ok = _le(ratio, limit)
        shown = (
            f"{_num(ratio)}× {'≤' if ok else '>'} {_num(limit)}× (p99 {_num(c)} ms vs stable {_num(s)} ms)"
        )
        return Check("latency ratio", "pass" if ok else "fail", c, s, bound, shown)

    def p99_exprs(self) -> tuple[Expr, Expr]:
        return self.expr("latency_quantile", 0.99), self.cand_expr("latency_quantile", 0.99)

    def agreement_check(self, limit: float) -> Check:
        bound = f"≥ {_num(limit)}%"
        gate = self.candidate_gate()
        if gate is not None:
            return Check("agreement", "inconclusive", None, None, bound, gate)
        compared = self.answer(self.expr("comparisons"))
        if isinstance(compared, str):
            return Check("agreement", "inconclusive", None, None, bound, compared)
        n = compared.get(self.candidate, 0.0)
        if n < self.min:
            shown = f"{_num(n)} comparisons in the window, fewer than minRequests {self.min}"
            return Check("agreement", "inconclusive", None, None, bound, shown)
        agreement = self.value(self.expr("agreement"), self.candidate)
        if isinstance(agreement, str):
            return Check("agreement", "inconclusive", None, None, bound, agreement)
        value = agreement * 100
        ok = _ge(value, limit)
        shown = f"{_num(value)}% {'≥' if ok else '<'} {_num(limit)}% of {_num(n)} comparisons"
        return Check("agreement", "pass" if ok else "fail", value, None, bound, shown)

    def drift_check(self, limit: float) -> Check:
        psi = build("drift_psi")
        cand, stable = self.both(psi, psi)
        if isinstance(cand, str) and not isinstance(self.answer(psi), str):
            cand = "no drift measured for the candidate (drift needs the version's reference statistics)"
        return self.absolute("drift PSI", cand, stable, "≤", limit, "")

    def metric_check(self, metric: AnalysisMetric, expr: Expr) -> Check:
        cand, stable = self.both(expr, expr)
        parts = []
        if metric.min is not None:
            parts.append(f"≥ {_num(metric.min)}")
        if metric.max is not None:
            parts.append(f"≤ {_num(metric.max)}")
        if metric.max_ratio is not None:
            parts.append(f"≤ {_num(metric.max_ratio)}× stable")
        bound = ", ".join(parts)
        s = stable if isinstance(stable, float) else None
        gate = self.candidate_gate()
        if gate is not None:
            return Check(metric.name, "inconclusive", _opt(cand), s, bound, gate)
        if isinstance(cand, str):
            return Check(metric.name, "inconclusive", None, s, bound, cand)
        failed = []
        if metric.min is not None and not _ge(cand, metric.min):
            failed.append(f"{_num(cand)} < {_num(metric.min)}")
        if metric.max is not None and not _le(cand, metric.max):
            failed.append(f"{_num(cand)} > {_num(metric.max)}")
        status: Status = "pass"
        notes = []
        if metric.max_ratio is not None:
            skip = self.stable_gate()
            if skip is None and isinstance(stable, str):
                skip = ("inconclusive", stable)
            if skip is None and isinstance(stable, float) and stable <= 0:
                skip = ("skipped", f"stable's {expr.text} is {_num(stable)}: no ratio")
            if skip is not None and metric.min is None and metric.max is None:
                return Check(metric.name, skip[0], cand, s, bound, skip[1])
            if skip is not None:  # the absolute bounds still judge; an unanswered ratio leaves it open
                status = "inconclusive" if skip[0] == "inconclusive" else status
                notes.append(f"ratio {skip[0]}: {skip[1]}")
            else:
                assert isinstance(stable, float)
                ratio = cand / stable
                if not _le(ratio, metric.max_ratio):
                    failed.append(f"{_num(ratio)}× stable > {_num(metric.max_ratio)}×")
                else:
                    notes.append(f"{_num(ratio)}× stable")
        if failed:
            return Check(metric.name, "fail", cand, s, bound, "; ".join(failed))
        shown = "; ".join([f"{_num(cand)} within {bound}", *notes])
        return Check(metric.name, status, cand, s, bound, shown)

    # -- shared shapes --------------------------------------------------------------------------------

    def early(
        self, name: str, cand: float | str, stable: float | str, bound: str, *, relative: bool
    ) -> Check | None:
        """The check when it cannot be judged: too few candidate requests, no value, or (relative ones)
        too few stable requests."""
        c = cand if isinstance(cand, float) else None
        s = stable if isinstance(stable, float) else None
        gate = self.candidate_gate()
        if gate is not None:
            return Check(name, "inconclusive", c, s, bound, gate)
        if isinstance(cand, str):
            return Check(name, "inconclusive", None, s, bound, cand)
        if relative:
            skip = self.stable_gate()
            if skip is not None:
                return Check(name, skip[0], c, s, bound, skip[1])
            if isinstance(stable, str):
                return Check(name, "inconclusive", c, None, bound, stable)
        return None

    def absolute(
        self, name: str, cand: float | str, stable: float | str, op: str, limit: float, unit: str
    ) -> Check:
        bound = f"{op} {_num(limit)}{unit}"
        early = self.early(name, cand, stable, bound, relative=False)
        if early is not None:
            return early
        assert isinstance(cand, float)
        ok = _ge(cand, limit) if op == "≥" else _le(cand, limit)
        shown_op = op if ok else ("<" if op == "≥" else ">")
        s = stable if isinstance(stable, float) else None
        detail = f"{_num(cand)}{unit} {shown_op} {_num(limit)}{unit}"
        return Check(name, "pass" if ok else "fail", cand, s, bound, detail)


def provider_for(analysis: Analysis, history: StackHistory) -> MetricsProvider:
    """The provider ``analysis`` names: its Prometheus server, else the control plane's history. A
    PrometheusProvider holds a connection pool: ``aclose`` it when the rollout ends."""
    prometheus = analysis.prometheus
    if prometheus is None:
        return HistoryProvider(history)
    return PrometheusProvider(prometheus.url, timeout_s=prometheus.timeout_seconds)


def _unreadable(metric: AnalysisMetric, message: str) -> Check:
    return Check(metric.name, "inconclusive", None, None, "", f"cannot read {metric.expr!r}: {message}")


def _percent_ok(error_rate: float | str) -> float | str:
    return 100.0 - error_rate * 100.0 if isinstance(error_rate, float) else error_rate


def _ms(seconds: float | str) -> float | str:
    return seconds * 1000.0 if isinstance(seconds, float) else seconds


def _opt(value: float | str) -> float | None:
    return value if isinstance(value, float) else None


# Bounds hold at equality; the slack absorbs float noise (99% of 100 requests is 98.99999999999999).
def _le(value: float, limit: float) -> bool:
    return value <= limit + 1e-9 * max(1.0, abs(limit))


def _ge(value: float, limit: float) -> bool:
    return value >= limit - 1e-9 * max(1.0, abs(limit))


def _num(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def _signed(x: float) -> str:
    return ("+" if x >= 0 else "") + _num(x)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None
