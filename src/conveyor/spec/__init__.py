"""The declarative spec (``apiVersion: conveyor.dev/v1``): resources as pydantic models, read from YAML.

See docs/spec.md for every field.
"""

from conveyor.spec.loader import dump_yaml, load_documents, load_file
from conveyor.spec.resources import (
    API_VERSION,
    KINDS,
    Autoscaling,
    Batching,
    Deployment,
    DeploymentSpec,
    Metadata,
    Resource,
    Resources,
    Traffic,
    parse_duration,
)
from conveyor.spec.rollout import RolloutSpec

__all__ = [
    "API_VERSION",
    "KINDS",
    "Autoscaling",
    "Batching",
    "Deployment",
    "DeploymentSpec",
    "Metadata",
    "Resource",
    "Resources",
    "RolloutSpec",
    "Traffic",
    "dump_yaml",
    "load_documents",
    "load_file",
    "parse_duration",
]
