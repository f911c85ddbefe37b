"""Kubernetes and KServe manifests for Conveyor deployments (docs/operations.md, Kubernetes and KServe).

Pure functions from a Deployment spec and the model version it resolves to into plain dicts, one per
Kubernetes object (``stack.py`` puts them together); ``files.py`` writes them, ``apply.py`` server-side
applies them with the kubernetes client (the ``kubernetes`` extra, imported there only).
"""

from conveyor.k8s.kserve import inference_service
from conveyor.k8s.names import ArtifactSource, ModelVersion, Options, Served
from conveyor.k8s.stack import deployment_objects, stack_objects

__all__ = [
    "ArtifactSource",
    "ModelVersion",
    "Options",
    "Served",
    "deployment_objects",
    "inference_service",
    "stack_objects",
]
