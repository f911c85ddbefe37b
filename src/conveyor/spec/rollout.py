"""``spec.rollout``: how a deployment's new model version takes traffic — the strategy and its steps, the
analysis that judges the candidate at every interval, promotion, and the webhooks told about it.

Every check names its field and what is wrong; the canonical form (``Resource.to_dict``) reads back as the
same rollout (a check turned off with null stays null; ``mirror`` is written only for shadow).
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from conveyor import errors
from conveyor.observe.alert_expr import validate_metric_expr
from conveyor.registry.refs import check_alias
from conveyor.spec.base import (
    SpecModel,
    first_repeated,
    http_url,
    invalid,
    parse_duration,
    positive_duration,
)

Strategy = Literal["replace", "canary", "blueGreen", "shadow", "abTest"]
WebhookEvent = Literal["start", "step", "promotion", "rollback", "check"]
DEFAULT_CANARY_STEPS: Final = (10.0, 50.0, 100.0)
DEFAULT_WEBHOOK_EVENTS: Final[tuple[WebhookEvent, ...]] = ("start", "step", "promotion", "rollback")
# Strategies that move traffic in steps (shadow: optionally, after its shadow phase).
STEPPED: Final = frozenset({"canary", "shadow"})

Percent = Annotated[float, Field(gt=0, le=100)]
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")  # an HTTP header or cookie name
_CHECK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")


def _token(name: str, what: str) -> str:
    if not _TOKEN.match(name):
        raise invalid(f"invalid {what} {name!r}: letters, digits and !#$%&'*+.^_`|~- (at most 128)")
    return name


def _number(value: float) -> str:
    return f"{value:g}"


class HeaderMatch(SpecModel):
    """Requests whose header ``name`` equals ``value`` go to the candidate."""

    name: str = Field(description="A header name; matched case-insensitively (kept in lowercase).")
    value: str = Field(min_length=1, max_length=1024, description="The value that selects the candidate.")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return _token(name, "header name").lower()


class ABTest(SpecModel):
    """How an abTest rollout chooses a variant per request: a header match first, else a hash of the user
    id (from ``userHeader``, else ``cookie``) into ``weight`` percent of users; no user id: stable."""

    header: HeaderMatch | None = Field(default=None, description="A header that selects the candidate.")
    cookie: str | None = Field(default=None, description="The cookie holding the user id.")
    user_header: str | None = Field(default=None, description="The header holding the user id.")
    weight: Percent = Field(
        default=10.0, description="Percent of users (by a hash of the id) on the candidate."
    )

    @field_validator("cookie")
    @classmethod
    def _cookie(cls, cookie: str | None) -> str | None:
        return None if cookie is None else _token(cookie, "cookie name")

    @field_validator("user_header")
    @classmethod
    def _user_header(cls, header: str | None) -> str | None:
        return None if header is None else _token(header, "header name").lower()

    @model_validator(mode="after")
    def _chooses_somehow(self) -> ABTest:
        if self.header is None and self.cookie is None and self.user_header is None:
            raise invalid("give header, cookie or userHeader: how a request picks its variant")
        return self


class AnalysisMetric(SpecModel):
    """One more check of the candidate: an alert expression or a Conveyor metric, with bounds."""

    name: str = Field(description="The check's name in tables and events.")
    expr: str = Field(description="An alert expression (p95_latency(1m)) or a conveyor_* metric name.")
    quantile: float = Field(default=0.99, gt=0, lt=1, description="For a histogram metric: the quantile.")
    min: float | None = Field(default=None, description="The candidate's value must be at least this.")
    max: float | None = Field(default=None, description="The candidate's value must be at most this.")
    max_ratio: float | None = Field(default=None, gt=0, description="Candidate / stable at most this.")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _CHECK_NAME.match(name):
            raise invalid(f"invalid check name {name!r}: a letter, then letters, digits, '_.-' (at most 63)")
        return name

    @field_validator("expr")
    @classmethod
    def _expr(cls, expr: str) -> str:
        try:
            validate_metric_expr(expr)  # what the analysis will read, per version
        except ValueError as exc:
            raise invalid(str(exc)) from None
        return expr

    @model_validator(mode="after")
    def _bounded(self) -> AnalysisMetric:
        if self.min is None and self.max is None and self.max_ratio is None:
            raise invalid(f"check {self.name!r} needs a bound: min, max or maxRatio")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise invalid(f"check {self.name!r}: min {self.min:g} is above max {self.max:g}")
        return self


class _Endpoint(SpecModel):
    """An http(s) URL that Conveyor calls, and how long one call may take."""

    url_name: ClassVar[str] = "URL"

    url: str = Field(description="http(s) URL.")
    timeout: str = Field(default="5s", description="How long one call may take.")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return http_url(url, cls.url_name)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, timeout: str) -> str:
        return positive_duration(timeout, "timeout")

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)


class PrometheusProvider(_Endpoint):
    """Query a Prometheus server's HTTP API (``url``, e.g. http://prometheus:9090) for the analysis instead
    of Conveyor's own metrics."""

    url_name: ClassVar[str] = "Prometheus URL"


# Checks that are on by default: null turns one off, and must stay null in the canonical form (which
# leaves None out), or the revision would read back with the check on again.
_OFF_WITH_NULL = ("success_rate", "max_latency_ratio", "agreement")


class Analysis(SpecModel):
    """What the candidate must show over each interval (a field set to null turns its check off)."""

    min_requests: int = Field(
        default=20, ge=1, le=1_000_000, description="Fewer candidate requests in a window: inconclusive."
    )
    success_rate: float | None = Field(
        default=99.0, ge=0, le=100, description="Candidate's min percent of answers without a server error."
    )
    max_error_rate_increase: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Candidate's error rate at most this many points above stable's.",
    )
    p99_latency_ms: float | None = Field(default=None, gt=0, description="Candidate's p99 latency at most.")
    max_latency_ratio: float | None = Field(
        default=1.5, gt=0, description="Candidate's p99 / stable's p99 at most."
    )
    agreement: float | None = Field(
        default=99.0, ge=0, le=100, description="Min percent of compared answers that agree."
    )
    tolerance: float = Field(default=1e-5, ge=0, description="Max abs difference for two floats to agree.")
    compare: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description="Canary: percent of candidate-answered requests also sent to stable and compared.",
    )
    max_drift_psi: float | None = Field(default=None, ge=0, description="Candidate's drift PSI at most.")
    metrics: list[AnalysisMetric] = Field(default_factory=list, description="More checks, by expression.")
    prometheus: PrometheusProvider | None = Field(
        default=None, description="Query this Prometheus server instead of Conveyor's own metrics."
    )

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, metrics: list[AnalysisMetric]) -> list[AnalysisMetric]:
        if (twice := first_repeated([m.name for m in metrics])) is not None:
            raise invalid(f"check {twice!r} is listed twice")
        return metrics

    @model_serializer(mode="wrap")
    def _keep_nulls(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        for name in _OFF_WITH_NULL:
            if getattr(self, name) is None:
                data[to_camel(name) if info.by_alias else name] = None
        return data


class Promotion(SpecModel):
    alias: str | None = Field(default=None, description="An alias moved to the candidate's version.")
    manual: bool = Field(default=False, description="Wait for `conveyor rollout approve` before promoting.")

    @field_validator("alias")
    @classmethod
    def _alias(cls, alias: str | None) -> str | None:
        if alias is not None:
            try:
                check_alias(alias)
            except errors.InvalidInput as exc:
                raise invalid(exc.message) from None
        return alias


class RolloutWebhook(_Endpoint):
    """A URL that gets a JSON POST on the rollout's events; with ``confirm``, a gate it must open (2xx)."""

    url_name: ClassVar[str] = "webhook URL"

    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(DEFAULT_WEBHOOK_EVENTS),
        description="start, step, promotion, rollback, check (every analysis).",
    )
    confirm: Literal["step", "promotion"] | None = Field(
        default=None, description="Ask before each step (or the promotion): 2xx goes on, anything else waits."
    )

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[WebhookEvent]) -> list[WebhookEvent]:
        if (twice := first_repeated(events)) is not None:
            raise invalid(f"event {twice!r} is listed twice")
        return events

    @model_validator(mode="after")
    def _does_something(self) -> RolloutWebhook:
        if not self.events and self.confirm is None:
            raise invalid(f"webhook {self.url!r} has no events and no confirm: it would never be called")
        return self


class RolloutSpec(SpecModel):
    """How a new model version of the deployment takes traffic (``replace``: at once, once ready)."""

    strategy: Strategy = Field(default="canary", description="replace, canary, blueGreen, shadow or abTest.")
    steps: list[Percent] | None = Field(
        default=None,
        description="Canary traffic weights in percent, increasing (canary default 10, 50, 100); for "
        "shadow: canary steps after the shadow phase.",
    )
    interval: str = Field(default="30s", description="One analysis window: 500ms, 30s, 5m, 1h.")
    iterations: int = Field(
        default=3, ge=1, le=1000, description="Passing intervals needed by blueGreen, shadow and abTest."
    )
    threshold: int = Field(default=2, ge=1, le=100, description="Failed checks before the rollback.")
    progress_deadline: str = Field(
        default="10m", description="No step advanced for this long (waits for approval excluded): rollback."
    )
    manual_gates: list[Percent] = Field(
        default_factory=list, description="Step weights that wait for `conveyor rollout approve` first."
    )
    mirror: Percent = Field(default=100.0, description="Shadow: percent of requests mirrored.")
    ab_test: ABTest | None = Field(default=None, description="abTest: how requests pick a variant.")
    analysis: Analysis = Field(default_factory=Analysis)
    promotion: Promotion = Field(default_factory=Promotion)
    webhooks: list[RolloutWebhook] = Field(default_factory=list)

    # Field validators (info.data: the fields above, when valid), so each error names its own field.
    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if steps is None:
            return None
        strategy = info.data.get("strategy")
        if strategy is not None and strategy not in STEPPED:
            raise invalid(f"steps apply only to strategy canary or shadow, not {strategy}")
        if not steps:
            raise invalid("give at least one step")
        for before, after in pairwise(steps):
            if after <= before:
                raise invalid(f"steps must increase ({_number(before)} then {_number(after)})")
        return steps

    @field_validator("interval")
    @classmethod
    def _interval(cls, interval: str) -> str:
        return positive_duration(interval, "interval")

    @field_validator("progress_deadline")
    @classmethod
    def _deadline(cls, deadline: str, info: ValidationInfo) -> str:
        positive_duration(deadline, "progressDeadline")
        interval = info.data.get("interval")
        if interval is not None and parse_duration(deadline) <= parse_duration(interval):
            raise invalid(f"progressDeadline ({deadline}) must be longer than the interval ({interval})")
        return deadline

    @field_validator("manual_gates")
    @classmethod
    def _gates(cls, gates: list[float], info: ValidationInfo) -> list[float]:
        if not gates or "steps" not in info.data or "strategy" not in info.data:
            return gates  # nothing to check, or the steps are wrong themselves
        plan = _plan(info.data["strategy"], info.data["steps"])
        if not plan:
            raise invalid(f"manualGates wait before canary steps; strategy {info.data['strategy']} has none")
        for gate in gates:
            if gate not in plan:
                raise invalid(
                    f"manual gate {_number(gate)} is not a step (steps: {', '.join(map(_number, plan))})"
                )
        if (twice := first_repeated(gates)) is not None:
            raise invalid(f"manual gate {_number(twice)} is listed twice")
        return gates

    @field_validator("mirror")
    @classmethod
    def _mirror(cls, mirror: float, info: ValidationInfo) -> float:
        strategy = info.data.get("strategy")
        if strategy is not None and strategy != "shadow":
            raise invalid(f"mirror applies only to strategy shadow, not {strategy}")
        return mirror

    @field_validator("ab_test")
    @classmethod
    def _ab_test(cls, ab: ABTest | None, info: ValidationInfo) -> ABTest | None:
        strategy = info.data.get("strategy")
        if ab is not None and strategy is not None and strategy != "abTest":
            raise invalid(f"abTest applies only to strategy abTest, not {strategy}")
        return ab

    @field_validator("analysis")
    @classmethod
    def _analysis(cls, analysis: Analysis, info: ValidationInfo) -> Analysis:
        strategy = info.data.get("strategy")
        if analysis.compare > 0 and strategy is not None and strategy not in STEPPED:
            raise invalid(f"compare applies to canary steps (strategy canary or shadow), not {strategy}")
        return analysis

    @model_validator(mode="after")
    def _ab_test_given(self) -> RolloutSpec:
        if self.strategy == "abTest" and self.ab_test is None:
            raise invalid("strategy abTest needs an abTest block: header, cookie or userHeader")
        return self

    @model_serializer(mode="wrap")
    def _mirror_for_shadow(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if self.strategy != "shadow":
            data.pop("mirror", None)  # it means nothing there, and is refused when given
        return data

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def progress_deadline_seconds(self) -> float:
        return parse_duration(self.progress_deadline)

    def plan_weights(self) -> list[float]:
        """The canary steps, in order: canary's (default 10, 50, 100), shadow's (none unless given);
        other strategies have none."""
        return _plan(self.strategy, self.steps)


def _plan(strategy: str, steps: list[float] | None) -> list[float]:
    if strategy == "canary":
        return list(steps) if steps is not None else list(DEFAULT_CANARY_STEPS)
    if strategy == "shadow" and steps is not None:
        return list(steps)
    return []
