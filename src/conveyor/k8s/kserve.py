"""A KServe InferenceService for a deployment, for teams already on KServe: the V2 protocol and the ONNX
model format (KServe picks its ONNX runtime, Triton, for them), from a storage URI that holds the version's
ONNX bytes as ``model.onnx``."""

from __future__ import annotations

from typing import Any, Final

from conveyor.k8s.names import Options, Served, dns_label, labels, metadata, replica_labels
from conveyor.k8s.workloads import cpu_for, memory_for

PLACEHOLDER_BUCKET: Final = "s3://CHANGE-ME"
"""Storage URI base when no S3 artifact store is configured: replace it with where model.onnx was copied."""


def storage_uri(served: Served, options: Options, given: str | None = None) -> str:
    """``given``, else a folder for this version beside the S3 artifact store's blobs
    (``s3://BUCKET/PREFIX/kserve/NAME/VERSION``), else under the placeholder bucket. KServe's storage
    initializer copies the folder; the ONNX runtime loads ``model.onnx`` from it, so the version's bytes must
    be put there under that name (a content-addressed blob has no such name)."""
    if given is not None:
        return given
    base = (options.artifacts.url or PLACEHOLDER_BUCKET).rstrip("/")
    return f"{base}/kserve/{served.model.name}/{served.model.version}"


def inference_service(served: Served, options: Options, given_uri: str | None = None) -> dict[str, Any]:
    """The InferenceService ``serving.kserve.io/v1beta1`` of ``served``'s model version."""
    spec = served.deployment.spec
    cpu = cpu_for(spec.resources.threads)
    memory, memory_limit = memory_for(served.model.size_bytes)
    predictor: dict[str, Any] = {
        "model": {
            "modelFormat": {"name": "onnx"},
            "protocolVersion": "v2",
            "storageUri": storage_uri(served, options, given_uri),
            "resources": {
                "requests": {"cpu": cpu, "memory": memory},
                "limits": {"cpu": cpu, "memory": memory_limit},
            },
        },
    }
    if spec.autoscaling is None:
        predictor["minReplicas"] = predictor["maxReplicas"] = spec.replicas or 0
    else:
        policy = spec.autoscaling
        predictor |= {
            "minReplicas": 0 if policy.scale_to_zero else policy.min_replicas,
            "maxReplicas": policy.max_replicas,
            # KServe's own concurrency target (Knative's KPA), the same signal as targetInFlight.
            "scaleMetric": "concurrency",
            "scaleTarget": max(round(policy.target_in_flight), 1),
        }
    if (timeout := spec.batching.request_timeout_milliseconds) is not None:
        predictor["timeout"] = max(round(timeout / 1000), 1)
    meta = metadata(
        dns_label(served.name), options, labels(options, "kserve-predictor", **replica_labels(served))
    )
    meta["annotations"] = {
        "conveyor.dev/model": served.model.ref,
        "conveyor.dev/sha256": served.model.sha256,
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": predictor},
    }
