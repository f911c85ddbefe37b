"""What the registry returns: immutable records (models, versions, deployments), JSON-able via ``to_dict``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
