"""The model registry: immutable, content-addressed model versions with aliases, tags and lineage."""

from conveyor.registry.records import ModelInfo, VersionInfo
from conveyor.registry.refs import ModelRef, parse_ref
from conveyor.registry.service import Registry
from conveyor.registry.store import ArtifactStore, LocalArtifactStore

__all__ = [
    "ArtifactStore",
    "LocalArtifactStore",
    "ModelInfo",
    "ModelRef",
    "Registry",
    "VersionInfo",
    "parse_ref",
]
