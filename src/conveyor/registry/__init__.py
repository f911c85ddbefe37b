"""The registry: content-addressed model versions (aliases, tags, lineage) and deployment revisions."""

from conveyor.registry.deployments import DeploymentStore
from conveyor.registry.records import (
    ApplyResult,
    DeploymentInfo,
    EventInfo,
    ModelInfo,
    RevisionInfo,
    VersionInfo,
)
from conveyor.registry.refs import ModelRef, parse_ref
from conveyor.registry.service import Registry
from conveyor.registry.store import ArtifactStore, LocalArtifactStore

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
    "VersionInfo",
    "parse_ref",
]
