"""The registry: content-addressed model versions (aliases, tags, lineage, validation verdicts), deployment
revisions, rollouts.

The names below load on first use: importing ``registry.refs`` (reference parsing, which the spec and the CLI
use) must not pull in SQLAlchemy and Alembic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.registry.deployments import DeploymentStore
    from conveyor.registry.records import (
        ApplyResult,
        DeploymentInfo,
        EventInfo,
        ModelInfo,
        RevisionInfo,
        RolloutEventInfo,
        RolloutInfo,
        VersionInfo,
    )
    from conveyor.registry.refs import ModelRef, parse_ref
    from conveyor.registry.rollouts import RolloutStore
    from conveyor.registry.service import Registry
    from conveyor.registry.store import ArtifactStore, LocalArtifactStore
    from conveyor.registry.validations import ValidationInfo, ValidationStore

_WHERE = {
    "ApplyResult": "records",
    "ArtifactStore": "store",
    "DeploymentInfo": "records",
    "DeploymentStore": "deployments",
    "EventInfo": "records",
    "LocalArtifactStore": "store",
    "ModelInfo": "records",
    "ModelRef": "refs",
    "Registry": "service",
    "RevisionInfo": "records",
    "RolloutEventInfo": "records",
    "RolloutInfo": "records",
    "RolloutStore": "rollouts",
    "ValidationInfo": "validations",
    "ValidationStore": "validations",
    "VersionInfo": "records",
    "parse_ref": "refs",
}
__all__ = [
    "ApplyResult",
    "ArtifactStore",
    "DeploymentInfo",
    "DeploymentStore",
    "EventInfo",
    "LocalArtifactStore",
    "ModelInfo",
    "ModelRef",
    "Registry",
    "RevisionInfo",
    "RolloutEventInfo",
    "RolloutInfo",
    "RolloutStore",
    "ValidationInfo",
    "ValidationStore",
    "VersionInfo",
    "parse_ref",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"conveyor.registry.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'conveyor.registry' has no attribute {name!r}")
