"""The resources of a spec file as pydantic models: ``Deployment`` and the policies inside it.

Field names are snake_case in Python and camelCase in YAML (the aliases); unknown fields are errors.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, ClassVar, Final, Literal, get_args

from pydantic import Field, ValidationInfo, field_validator, model_validator

from conveyor import errors
from conveyor.observe.alert_defaults import DEFAULT_RULES
from conveyor.observe.alert_expr import parse as parse_expr
from conveyor.registry.refs import parse_ref
from conveyor.settings import Settings
from conveyor.spec.base import SpecModel, first_repeated, http_url, invalid, positive_duration
from conveyor.spec.base import parse_duration as parse_duration  # where callers have always found it
from conveyor.spec.rollout import RolloutSpec, Strategy
from conveyor.spec.units import (
    MAX_BATCH_SIZE,
    MAX_CACHE_BYTES,
    MAX_CACHE_ENTRIES,
    MAX_QUEUE_DELAY_MICROSECONDS,
    MAX_QUEUE_SIZE,
    MAX_REPLICAS,
    MAX_REQUEST_TIMEOUT_MILLISECONDS,
    MAX_THREADS,
)

API_VERSION: Final = "conveyor.dev/v1"
DEFAULT_HOLD_TIMEOUT_SECONDS: Final = 30.0
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def name_problem(name: object, what: str = "name") -> str | None:
    """What is wrong with a resource name (a DNS label), or None; ``what`` names it in the message."""
    if isinstance(name, str) and _DNS_LABEL.match(name):
        return None
    return (
        f"invalid {what} {name!r}: use at most 63 lowercase letters, digits and '-', "
        "starting and ending with a letter or digit"
    )


_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def label_problem(key: object, value: object) -> str | None:
    """What is wrong with one label (metadata, an edge node's), or None."""
    if not isinstance(key, str) or not _LABEL_KEY.match(key):
        return f"invalid label key {key!r}: use [prefix/]name, name at most 63 characters"
    if not isinstance(value, str) or not _LABEL_VALUE.match(value):
        return f"invalid label value {value!r} for {key!r}: at most 63 letters, digits, '-_.'"
    return None


class Metadata(SpecModel):
    name: str = Field(description="DNS label: lowercase letters, digits and '-', at most 63 characters.")
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form key/value labels.")

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        if problem := name_problem(name):
            raise invalid(problem)
        return name

    @field_validator("labels")
    @classmethod
    def _label_syntax(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not _LABEL_KEY.match(key):
                raise invalid(f"invalid label key {key!r}: use [prefix/]name, name at most 63 characters")
            if not _LABEL_VALUE.match(value):
                raise invalid(f"invalid label value {value!r} for {key!r}: at most 63 letters, digits, '-_.'")
        return labels


class Autoscaling(SpecModel):
    min_replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS, description="Fewest replicas kept running.")
    max_replicas: int = Field(ge=1, le=MAX_REPLICAS, description="Most replicas; >= minReplicas.")
    target_in_flight: float = Field(
        default=2.0, gt=0, description="Requests in flight per replica to aim at."
    )
    window_seconds: float = Field(default=10.0, gt=0, description="Averaging window of the in-flight load.")
    scale_up_stabilization_seconds: float = Field(default=0.0, ge=0)
    scale_down_stabilization_seconds: float = Field(default=60.0, ge=0)
    scale_to_zero: bool = Field(
        default=False,
        description="Stop every replica when idle; needs minReplicas 0.",
    )
    hold_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="With scaleToZero: how long a request waits for the first replica (default 30).",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_hold(cls, data: Any) -> Any:
        # Set only with scaleToZero, so the canonical form has it exactly when it means something.
        if not isinstance(data, dict) or data.get("scaleToZero", data.get("scale_to_zero")) is not True:
            return data
        if data.get("holdTimeoutSeconds", data.get("hold_timeout_seconds")) is None:
            return {**data, "holdTimeoutSeconds": DEFAULT_HOLD_TIMEOUT_SECONDS}
        return data

    # Field validators (not a model validator) so each error carries its own field's path and line;
    # info.data holds the fields declared above, when they were valid.
    @field_validator("max_replicas")
    @classmethod
    def _max_at_least_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_replicas")
        if low is not None and value < low:
            raise invalid(f"must be >= minReplicas ({value} < {low})")
        return value

    @field_validator("scale_to_zero")
    @classmethod
    def _zero_needs_min_zero(cls, value: bool, info: ValidationInfo) -> bool:
        low = info.data.get("min_replicas")
        if value and low is not None and low != 0:
            raise invalid(f"needs minReplicas: 0 (minReplicas is {low})")
        return value

    @model_validator(mode="after")
    def _min_zero_needs_scale_to_zero(self) -> Autoscaling:
        # After the fields (scaleToZero may be left out): reported at the autoscaling block's line.
        if self.min_replicas == 0 and not self.scale_to_zero:
            raise invalid("minReplicas: 0 needs scaleToZero: true (or use minReplicas >= 1)")
        return self

    @field_validator("hold_timeout_seconds")
    @classmethod
    def _hold_needs_zero(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("scale_to_zero") is False:
            raise invalid("applies only with scaleToZero: true")
        return value


class Batching(SpecModel):
    """Per-replica dynamic batching; a field left out takes the server's Settings value when used."""

    max_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE)
    max_queue_delay_microseconds: int | None = Field(default=None, ge=0, le=MAX_QUEUE_DELAY_MICROSECONDS)
    max_queue_size: int | None = Field(default=None, ge=1, le=MAX_QUEUE_SIZE)
    request_timeout_milliseconds: int | None = Field(default=None, ge=1, le=MAX_REQUEST_TIMEOUT_MILLISECONDS)

    def resolve(self, settings: Settings) -> Batching:
        """Every field set: this spec's value, else the one in ``settings``."""
        return Batching(
            max_batch_size=_first(self.max_batch_size, settings.max_batch_size),
            max_queue_delay_microseconds=_first(
                self.max_queue_delay_microseconds, settings.max_queue_delay_us
            ),
            max_queue_size=_first(self.max_queue_size, settings.max_queue_size),
            request_timeout_milliseconds=_first(
                self.request_timeout_milliseconds, settings.request_timeout_ms
            ),
        )


class Resources(SpecModel):
    threads: int | None = Field(
        default=None,
        ge=0,
        le=MAX_THREADS,
        description="ONNX Runtime intra-op threads per replica; 0 lets it choose.",
    )

    # The GPU fields are left out of the canonical form when not given (fingerprints of older revisions
    # unchanged); docs/gpu.md.
    gpu: int | None = Field(
        default=None,
        ge=0,
        description="GPUs per replica: 1 runs each replica's model on its own GPU with ONNX Runtime's CUDA "
        "provider (the replicas spread over the machine's GPUs); 0 or left out: the CPU.",
    )
    accelerator: Literal["cuda", "tensorrt"] | None = Field(
        default=None,
        description="With gpu: 1, the provider in front: cuda (the default) or tensorrt (TensorRT when "
        "installed, CUDA for what it does not take).",
    )
    fallback: Literal["cpu"] | None = Field(
        default=None,
        description="With gpu: 1, what to do on a machine without the GPU asked for: cpu runs on the CPU "
        "with a warning; left out, apply is refused.",
    )

    @field_validator("gpu")
    @classmethod
    def _one_gpu(cls, gpu: int | None) -> int | None:
        if gpu is not None and gpu > 1:
            raise invalid(
                f"gpu: {gpu} per replica: a replica's ONNX Runtime session runs on one GPU; use gpu: 1 and "
                "more replicas to use more GPUs"
            )
        return gpu

    @field_validator("accelerator", "fallback")
    @classmethod
    def _with_a_gpu(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not info.data.get("gpu"):
            raise invalid(f"{info.field_name}: {value} applies only with gpu: 1")
        return value

    @property
    def device(self) -> str:
        """The device its replicas ask for (runtime/providers.py): cpu, cuda or tensorrt."""
        return (self.accelerator or "cuda") if self.gpu else "cpu"

    def resolve(self, settings: Settings) -> Resources:
        return self.model_copy(update={"threads": _first(self.threads, settings.intra_op_threads)})


# -- alert rules (docs/observability.md, Alerts) ----------------------------------------------------------

Severity = Literal["info", "warning", "critical"]
Comparison = Literal[">", ">=", "<", "<="]
_PROM_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_ALERT_LABELS = frozenset({"alertname", "deployment", "version", "severity"})


class AlertFields(SpecModel):
    """What an alert rule says; shared by ``kind: AlertRule`` and a deployment's ``alerts`` list."""

    expr: str | None = Field(
        default=None, description="An indicator over Conveyor's metrics: error_rate(5m)."
    )
    op: Comparison | None = Field(
        default=None, description="How the value compares with threshold (default >)."
    )
    threshold: float | None = Field(default=None, description="The value the expression is compared with.")
    for_: str | None = Field(
        default=None, alias="for", description="How long the condition holds before it fires (0s: at once)."
    )
    severity: Severity | None = Field(default=None, description="info, warning (default) or critical.")
    summary: str | None = Field(
        default=None, description="One line for people; {{ $value }} and {{ $labels.version }} are filled in."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, exclude_if=lambda labels: not labels, description="Extra labels of the alert."
    )
    webhooks: list[str] = Field(
        default_factory=list,
        exclude_if=lambda hooks: not hooks,
        description="URLs that get its notifications, besides the alert_webhooks setting's.",
    )

    @field_validator("expr", "for_")
    @classmethod
    def _parses(cls, text: str | None, info: ValidationInfo) -> str | None:
        """An expression or a duration is checked by the parser that will read it."""
        if text is not None:
            try:
                (parse_expr if info.field_name == "expr" else parse_duration)(text)
            except ValueError as exc:
                raise invalid(str(exc)) from None
        return text

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if not _PROM_LABEL.match(key):
                raise invalid(f"invalid label name {key!r}: letters, digits and '_', not a digit first")
            if key in _RESERVED_ALERT_LABELS:
                raise invalid(f"label {key!r} is set by Conveyor; use another name")
        return labels

    @field_validator("webhooks")
    @classmethod
    def _webhooks(cls, hooks: list[str]) -> list[str]:
        for url in hooks:
            http_url(url, "webhook URL")
        return hooks


class DeploymentAlert(AlertFields):
    """A deployment's own rule; named like a built-in rule (error-rate, p99-latency, crash-loop, drift) it
    changes the fields it gives of that rule, or turns it off with ``enabled: false``."""

    name: str = Field(description="The rule's name (a DNS label), unique in the list.")
    enabled: bool = Field(default=True, exclude_if=lambda on: on, description="false turns the rule off.")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if problem := name_problem(name, "rule name"):
            raise invalid(problem)
        return name

    @model_validator(mode="after")
    def _complete_unless_builtin(self) -> DeploymentAlert:
        if self.name not in DEFAULT_RULES and self.enabled and (self.expr is None or self.threshold is None):
            raise invalid(
                f"rule {self.name!r} needs expr and threshold (only the built-in rules "
                f"{', '.join(DEFAULT_RULES)} can be changed field by field)"
            )
        return self


class AlertRuleSpec(AlertFields):
    expr: str = Field(description="An indicator over Conveyor's metrics, e.g. error_rate(5m).")
    threshold: float = Field(description="The value the expression is compared with.")
    deployment: str | None = Field(
        default=None, description="The deployment it applies to; left out: every deployment."
    )

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, name: str | None) -> str | None:
        if name is not None and (problem := name_problem(name, "deployment name")):
            raise invalid(problem)
        return name


class Traffic(SpecModel):
    """How a new revision takes traffic without a rollout: all at once, once its replicas are ready.
    Progressive strategies are ``spec.rollout``'s; their names here are refused with a pointer to it."""

    strategy: Literal["replace"] = "replace"
    steps: list[int] | None = Field(default=None, description="Refused: steps are spec.rollout.steps.")
    interval: str = Field(default="30s", description="Kept for older files; spec.rollout.interval is used.")

    @field_validator("strategy", mode="before")
    @classmethod
    def _rollout_strategy(cls, strategy: Any) -> Any:
        if strategy in _ROLLOUT_STRATEGIES:
            raise invalid(
                f"{strategy} is a rollout strategy: write it as spec.rollout.strategy: {strategy} "
                "(spec.traffic.strategy takes only replace)"
            )
        return strategy

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int] | None) -> list[int] | None:
        if steps is not None:
            raise invalid("canary steps are spec.rollout.steps (with spec.rollout.strategy: canary)")
        return steps

    @field_validator("interval")
    @classmethod
    def _interval(cls, interval: str) -> str:
        return positive_duration(interval, "interval")

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


_ROLLOUT_STRATEGIES = frozenset(get_args(Strategy)) - {"replace"}


class EdgeFollowers(SpecModel):
    """Which edge nodes follow the deployment (``conveyor edge run``, docs/edge.md)."""

    labels: dict[str, str] = Field(
        default_factory=dict,
        description="An edge node follows the deployment when its labels include every one of these; "
        "empty: every edge node that names the deployment.",
    )

    @field_validator("labels")
    @classmethod
    def _label_syntax(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if problem := label_problem(key, value):
                raise invalid(problem)
        return labels


class DriftMonitoring(SpecModel):
    """Input drift against the version's registration sample (docs/observability.md, Drift)."""

    enabled: bool = Field(default=True, description="Watch drift when the version has reference statistics.")
    sample_every: int = Field(default=10, ge=1, le=1_000_000, description="Take the rows of each Nth request")
    window: int = Field(default=2000, ge=10, le=1_000_000, description="Rows kept per feature (the latest).")


class InferenceLogging(SpecModel):
    """A sampled log of requests with their inputs and outputs, under <home>/inference-logs/<deployment>/."""

    enabled: bool = Field(default=False, description="Write the log (off by default: it is the user's data).")
    sample_every: int = Field(default=100, ge=1, le=1_000_000, description="Log every Nth request.")
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Size of a file before it rotates.")
    keep: int = Field(default=3, ge=0, le=100, description="Rotated files kept (inference.jsonl.1 ...).")


class Monitoring(SpecModel):
    drift: DriftMonitoring = Field(default_factory=DriftMonitoring)
    inference_log: InferenceLogging = Field(default_factory=InferenceLogging)


class ResponseCache(SpecModel):
    """Each replica answers a request it answered before from a cache (docs/serving.md, Response cache)."""

    enabled: bool = Field(default=True, description="Cache answers (false keeps the block, off).")
    max_entries: int = Field(
        default=10_000, ge=1, le=MAX_CACHE_ENTRIES, description="Answers kept per replica; least recent out."
    )
    max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        le=MAX_CACHE_BYTES,
        description="Bytes of answers kept per replica; a bigger answer is not cached.",
    )
    ttl: str = Field(default="60s", description="How long an answer is served from the cache after it ran.")

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, ttl: str) -> str:
        return positive_duration(ttl, "ttl")

    @property
    def ttl_seconds(self) -> float:
        return parse_duration(self.ttl)


Placement = Literal["auto", "inprocess", "process"]


class DeploymentSpec(SpecModel):
    model: str = Field(description="The model version to serve: NAME:VERSION or NAME@ALIAS.")
    replicas: int | None = Field(
        default=None, ge=0, le=MAX_REPLICAS, description="Fixed replica count; 1 when no autoscaling."
    )
    autoscaling: Autoscaling | None = None
    batching: Batching = Field(default_factory=Batching)
    resources: Resources = Field(default_factory=Resources)
    traffic: Traffic = Field(default_factory=Traffic)
    target: Literal["local", "ray", "kubernetes"] = "local"
    # Left out of the canonical form when auto, so the fingerprints of revisions stored before the field
    # existed stay what they were (an unchanged file re-applied is still "unchanged").
    placement: Placement = Field(
        default="auto",
        exclude_if=lambda placement: placement == "auto",
        description="Where the replica runs: process (its own, supervised: crash isolation, scaling), "
        "inprocess (inside each gateway: no hop; one copy per gateway, no replicas > 1, no autoscaling) "
        "or auto (process, for the local target).",
    )

    # Left out of the canonical form when false, like placement (fingerprints of older revisions unchanged).
    public: bool = Field(
        default=False,
        exclude_if=lambda public: not public,
        description="Anyone who reaches a gateway may call this deployment, with no token "
        "(docs/security.md). Default: a predictor token (or deployer, admin) is needed.",
    )

    # Left out of the canonical form when empty, like placement (fingerprints of older revisions unchanged).
    alerts: list[DeploymentAlert] = Field(
        default_factory=list,
        exclude_if=lambda alerts: not alerts,
        description="Alert rules of this deployment; the built-in ones by name to change or disable them.",
    )

    @field_validator("alerts")
    @classmethod
    def _unique_rule_names(cls, alerts: list[DeploymentAlert]) -> list[DeploymentAlert]:
        if (twice := first_repeated([a.name for a in alerts])) is not None:
            raise invalid(f"rule {twice!r} is listed twice")
        return alerts

    # Left out of the canonical form when false, like placement (fingerprints of older revisions unchanged).
    require_signed_models: bool = Field(
        default=False,
        exclude_if=lambda required: not required,
        description="Run only a model version signed by a trusted key (`conveyor models sign`): apply "
        "refuses others, and no replica loads them (docs/security.md, Signed models).",
    )

    # Left out of the canonical form when false, like placement (fingerprints of older revisions unchanged).
    require_validated: bool = Field(
        default=False,
        exclude_if=lambda required: not required,
        description="Run only a model version whose latest `conveyor validate` passed: apply and "
        "`rollout start` refuse others with a 409 (docs/validate.md).",
    )

    # Left out of the canonical form when not given (fingerprints of older revisions unchanged).
    monitoring: Monitoring | None = Field(
        default=None,
        description="Drift (on when the version has reference statistics) and the inference log (off).",
    )

    # Left out of the canonical form when not given (fingerprints of older revisions unchanged).
    cache: ResponseCache | None = Field(
        default=None,
        description="Answer repeated identical requests from each replica's cache (docs/serving.md, "
        "Response cache). Not given: no cache.",
    )

    # Left out of the canonical form when not given (fingerprints of older revisions unchanged).
    rollout: RolloutSpec | None = Field(
        default=None,
        description="How a new model version takes traffic: canary steps, blueGreen, shadow or abTest, "
        "judged from live metrics (docs/rollouts.md). Not given: replace.",
    )

    # Left out of the canonical form when not given (fingerprints of older revisions unchanged).
    edges: EdgeFollowers | None = Field(
        default=None,
        description="Edge nodes that follow this deployment, by their labels (docs/edge.md). Not given: "
        "any edge node that names the deployment.",
    )

    @field_validator("cache")
    @classmethod
    def _cache_in_a_replica_process(
        cls, cache: ResponseCache | None, info: ValidationInfo
    ) -> ResponseCache | None:
        if cache is not None and cache.enabled and info.data.get("placement") == "inprocess":
            raise invalid("the response cache runs in replica processes: use placement: process with cache")
        return cache

    @model_validator(mode="before")
    @classmethod
    def _default_replicas(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("replicas") is None and data.get("autoscaling") is None:
            return {**data, "replicas": 1}
        return data

    @field_validator("model")
    @classmethod
    def _model_ref(cls, model: str) -> str:
        try:
            ref = parse_ref(model)
        except errors.InvalidInput as exc:
            raise invalid(exc.message) from None
        if ref.version is None and ref.alias is None:
            raise invalid(f"{model!r} names no version: use NAME:VERSION or NAME@ALIAS (e.g. {model}:1)")
        return model

    # mode="before": reported even when the autoscaling block has errors of its own.
    @field_validator("autoscaling", mode="before")
    @classmethod
    def _one_of_replicas_autoscaling(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("replicas") is not None:
            raise invalid("give either replicas or autoscaling, not both")
        return value

    # On placement (declared after both), so the error names the combination where the user chose it.
    @field_validator("placement")
    @classmethod
    def _inprocess_is_one_copy(cls, placement: str, info: ValidationInfo) -> str:
        if placement != "inprocess":
            return placement
        resources = info.data.get("resources")
        if resources is not None and resources.gpu:
            raise invalid("a replica on a GPU runs in its own process: use placement: process with gpu")
        if info.data.get("autoscaling") is not None:
            raise invalid(
                "inprocess runs one copy inside each gateway and cannot autoscale: remove autoscaling "
                "or use placement: process"
            )
        replicas = info.data.get("replicas")
        if replicas is not None and replicas != 1:
            raise invalid(
                f"inprocess runs one copy inside each gateway, not replicas: {replicas}: use replicas: 1 "
                "or placement: process"
            )
        return placement


class Resource(SpecModel):
    """One document of a spec file: ``apiVersion``, ``kind``, ``metadata`` and ``spec``."""

    kind_name: ClassVar[str]

    api_version: Literal["conveyor.dev/v1"] = "conveyor.dev/v1"
    metadata: Metadata

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON-able form: YAML names, defaults filled in, absent options left out."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return {"apiVersion": data.pop("apiVersion"), "kind": data.pop("kind"), **data}

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON: equal for equal resources, whatever the YAML's layout."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


class Deployment(Resource):
    """A model version served by a set of replicas on a target."""

    kind_name: ClassVar[str] = "Deployment"

    kind: Literal["Deployment"] = "Deployment"
    spec: DeploymentSpec


class AlertRule(Resource):
    """An alert rule for one deployment (``spec.deployment``) or for every deployment."""

    kind_name: ClassVar[str] = "AlertRule"

    kind: Literal["AlertRule"] = "AlertRule"
    spec: AlertRuleSpec


KINDS: dict[str, type[Resource]] = {Deployment.kind_name: Deployment, AlertRule.kind_name: AlertRule}


def _first(value: int | None, default: int) -> int:
    return default if value is None else value
