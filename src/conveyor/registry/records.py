"""What the registry returns: immutable records (models, versions, deployments, rollouts), JSON-able via
``to_dict``."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any


class Record:
    """``to_dict``: the dataclass fields in order, deep-copied, timestamps as ISO 8601 strings."""

    def to_dict(self) -> dict[str, Any]:
        fields = asdict(self)  # type: ignore[call-overload]
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}


@dataclass(frozen=True)
class VersionInfo(Record):
    """One registered model version. Content (digest, signature) never changes; tags and aliases may."""

    name: str
    version: int
    sha256: str
    size_bytes: int
    framework: str
    signature: dict[str, Any]
    description: str | None
    tags: dict[str, str]
    aliases: list[str]  # sorted
    parent_version: int | None
    created_at: datetime  # aware, UTC
    created_by: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class ModelInfo(Record):
    """A model and a summary of its versions; ``latest_version`` is None once every version is deleted."""

    name: str
    description: str | None
    latest_version: int | None
    version_count: int
    aliases: dict[str, int]
    created_at: datetime  # aware, UTC
    created_by: str | None


@dataclass(frozen=True)
class ApplyResult(Record):
    """The outcome of ``apply`` or ``rollback``: ``changed`` is False when the spec was already current."""

    name: str
    revision: int
    changed: bool


@dataclass(frozen=True)
class RevisionInfo(Record):
    """One immutable revision of a deployment: the canonical spec as applied, and why."""

    name: str
    revision: int
    spec: dict[str, Any]
    fingerprint: str
    model: str | None  # the resolved name:version; None for revisions made before it was recorded
    created_at: datetime  # aware, UTC
    created_by: str | None
    change_cause: str


@dataclass(frozen=True)
class DeploymentInfo(Record):
    """A deployment and its current revision's spec."""

    name: str
    revision: int
    spec: dict[str, Any]
    fingerprint: str
    model: str | None  # the current revision's resolved name:version
    created_at: datetime  # aware, UTC
    updated_at: datetime  # aware, UTC: when the current revision was made
    created_by: str | None


@dataclass(frozen=True)
class EventInfo(Record):
    """One event of a deployment, as ``describe`` shows it."""

    name: str
    time: datetime  # aware, UTC
    kind: str
    message: str


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _camel_dict(record: Any) -> dict[str, Any]:
    """A slotted record's fields with camelCase keys, deep-copied, timestamps as ISO 8601 strings."""
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        out[_camel(f.name)] = value.isoformat() if isinstance(value, datetime) else copy.deepcopy(value)
    return out


ROLLOUT_ACTIVE_PHASES = ("progressing", "paused", "waiting")  # waiting: for `conveyor rollout approve`
ROLLOUT_ENDED_PHASES = ("promoted", "rolled_back", "superseded")


@dataclass(frozen=True, slots=True)
class RolloutInfo:
    """One rollout of a deployment: from the stable revision to the candidate, where it stands now."""

    id: int
    deployment: str
    number: int  # 1, 2, ... per deployment
    strategy: str  # canary, blueGreen, shadow, abTest
    phase: str  # ROLLOUT_ACTIVE_PHASES or ROLLOUT_ENDED_PHASES
    stable_revision: int
    candidate_revision: int
    stable_model: str | None  # name:version
    candidate_model: str | None
    step: int  # index into the plan's steps
    weight: float  # percent of traffic on the candidate
    failed_checks: int
    passed_checks: int  # consecutive passing checks in this step
    spec: dict[str, Any]  # the rollout block as applied (canonical form)
    started_at: datetime  # aware, UTC
    step_started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    started_by: str | None
    reason: str | None  # why it paused, ended or was forced
    forced: bool

    @property
    def active(self) -> bool:
        return self.phase in ROLLOUT_ACTIVE_PHASES

    def to_dict(self) -> dict[str, Any]:
        """camelCase keys (the management API's), ISO times, plus ``active``."""
        return {**_camel_dict(self), "active": self.active}


@dataclass(frozen=True, slots=True)
class RolloutEventInfo:
    """One event of a rollout: ``kind`` like start, step, check, pause, promotion, rollback; ``data`` its
    details (a verdict's checks)."""

    id: int
    rollout_id: int
    at: datetime  # aware, UTC
    kind: str
    message: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return _camel_dict(self)
