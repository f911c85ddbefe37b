"""Deployments to render, written as their YAML's ``spec`` mapping, and the checks every test shares."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from conveyor.k8s import ArtifactSource, ModelVersion, Options, Served
from conveyor.spec import Deployment

SHA = "ab" + "0123456789abcdef" * 3 + "cdef0123456789"
K8S_VERSION = "1.34.0"
"""The Kubernetes version every manifest is validated against (kubernetes-validate ships its schemas)."""
KSERVE_SCHEMA = (
    Path(__file__).parents[4] / "shared" / "schemas" / "kserve" / "inferenceservice-v1beta1.schema.json"
)
S3 = ArtifactSource(url="s3://models/conveyor", endpoint_url="http://minio:9000", region="eu-west-1")


def served(name: str = "iris", size: int = 10 * 2**20, **spec: Any) -> Served:
    doc = {"metadata": {"name": name}, "spec": {"model": "iris:3", **spec}}
    return Served(Deployment.model_validate(doc), ModelVersion("iris", 3, SHA, size))


def options(**more: Any) -> Options:
    return Options(**more)


def strict_k8s(obj: dict[str, Any]) -> None:
    """AssertionError unless ``obj`` validates, unknown fields refused, against K8S_VERSION."""
    import kubernetes_validate

    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def kserve_validator() -> Any:
    """A validator of the InferenceService CRD's schema from ../shared (its source: README.md beside it),
    every object that lists its properties closed to others (the API server would drop them silently);
    skipped without ../shared (a user's clone)."""
    if not KSERVE_SCHEMA.is_file():
        pytest.skip(f"KServe's schema is not here ({KSERVE_SCHEMA}): a clone without ../shared")
    return _validator()


@functools.cache
def _validator() -> Any:
    import json

    import jsonschema

    # Not jsonschema.validate: it first checks the 600 kB schema against the metaschema (~40 s here).
    return jsonschema.Draft7Validator(_closed(json.loads(KSERVE_SCHEMA.read_text())))


def _closed(node: Any) -> Any:
    if isinstance(node, list):
        return [_closed(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _closed(v) for k, v in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out
