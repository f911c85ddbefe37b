"""The declarative spec (``apiVersion: conveyor.dev/v1``): resources as pydantic models, read from YAML.

See docs/spec.md for every field. The names below load on first use: building the pydantic models costs a
good part of a CLI start, and most commands (and ``spec.units``, read by the CLI's options) never need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    )
    from conveyor.spec.rollout import RolloutSpec
    from conveyor.spec.units import parse_duration

_WHERE = {
    "dump_yaml": "loader",
    "load_documents": "loader",
    "load_file": "loader",
    "RolloutSpec": "rollout",
    "parse_duration": "units",
    **dict.fromkeys(
        (
            "API_VERSION",
            "KINDS",
            "Autoscaling",
            "Batching",
            "Deployment",
            "DeploymentSpec",
            "Metadata",
            "Resource",
            "Resources",
            "Traffic",
        ),
        "resources",
    ),
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.spec' has no attribute {name!r}")
    return getattr(importlib.import_module(f"conveyor.spec.{module}"), name)
