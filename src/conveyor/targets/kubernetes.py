"""The ``kubernetes`` target: at apply, a deployment's objects (k8s/stack.py: its model version's replica
Deployment, Service, HPA, PDB, NetworkPolicy) are server-side applied to the cluster of the control plane's
current kubeconfig context (k8s/apply.py); the cluster runs the replicas, not this machine."""

from __future__ import annotations

from conveyor.k8s import ArtifactSource, ModelVersion, Options, Served, deployment_objects
from conveyor.k8s.apply import Cluster, apply_objects, connect
from conveyor.registry.records import VersionInfo
from conveyor.settings import Settings, get_settings
from conveyor.spec import Deployment


def artifact_source(settings: Settings) -> ArtifactSource:
    """The artifact store replicas read: the S3 bucket of CONVEYOR_ARTIFACTS_URL, else the home volume."""
    return ArtifactSource(settings.artifacts_url, settings.s3_endpoint_url, settings.s3_region)


def model_version(info: VersionInfo) -> ModelVersion:
    return ModelVersion(info.name, info.version, info.sha256, info.size_bytes)


def apply_to_cluster(
    pairs: list[tuple[Deployment, VersionInfo]],
    settings: Settings | None = None,
    cluster: Cluster | None = None,
) -> list[str]:
    """Apply every pair's objects in the namespace of the current context (``cluster``: connect()'s);
    Unavailable, one line, when no cluster answers (nothing is applied then) or an object is refused
    (naming those applied before it)."""
    cluster = cluster or connect()
    options = Options(namespace=cluster.namespace, artifacts=artifact_source(settings or get_settings()))
    objects = [
        obj
        for resource, info in pairs
        for obj in deployment_objects(Served(resource, model_version(info)), options)
    ]
    return apply_objects(cluster, objects)
