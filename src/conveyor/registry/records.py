"""What the registry returns: immutable records (models, versions, deployments), JSON-able via ``to_dict``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class VersionInfo:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "framework": self.framework,
            "signature": self.signature,
            "description": self.description,
            "tags": dict(self.tags),
            "aliases": list(self.aliases),
            "parent_version": self.parent_version,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class ModelInfo:
    """A model and a summary of its versions; ``latest_version`` is None once every version is deleted."""

    name: str
    description: str | None
    latest_version: int | None
    version_count: int
    aliases: dict[str, int]
    created_at: datetime  # aware, UTC
    created_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "latest_version": self.latest_version,
            "version_count": self.version_count,
            "aliases": dict(self.aliases),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of ``apply`` or ``rollback``: ``changed`` is False when the spec was already current."""

    name: str
    revision: int
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "revision": self.revision, "changed": self.changed}


@dataclass(frozen=True)
class RevisionInfo:
    """One immutable revision of a deployment: the canonical spec as applied, and why."""

    name: str
    revision: int
    spec: dict[str, Any]
    fingerprint: str
    created_at: datetime  # aware, UTC
    created_by: str | None
    change_cause: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "revision": self.revision,
            "spec": self.spec,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "change_cause": self.change_cause,
        }


@dataclass(frozen=True)
class DeploymentInfo:
    """A deployment and its current revision's spec."""

    name: str
    revision: int
    spec: dict[str, Any]
    fingerprint: str
    created_at: datetime  # aware, UTC
    updated_at: datetime  # aware, UTC: when the current revision was made
    created_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "revision": self.revision,
            "spec": self.spec,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class EventInfo:
    """One event of a deployment, as ``describe`` shows it."""

    name: str
    time: datetime  # aware, UTC
    kind: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "time": self.time.isoformat(), "kind": self.kind, "message": self.message}
