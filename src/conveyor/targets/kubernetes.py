"""The ``kubernetes`` target: at apply, a deployment's objects (k8s/stack.py: its model version's replica
Deployment, Service, HPA, PDB, NetworkPolicy) are server-side applied to the cluster of the control plane's
current kubeconfig context (k8s/apply.py); the cluster runs the replicas, not this machine. As a ``Target``
(targets/base.py) it scales those objects and reports what the API says of them."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Sequence
from typing import Any, Protocol, cast

from conveyor import errors
from conveyor.k8s import ArtifactSource, ModelVersion, Options, Served, deployment_objects
from conveyor.k8s.apply import Cluster, apply_objects, connect
from conveyor.k8s.names import dns_label
from conveyor.registry.records import VersionInfo
from conveyor.settings import Settings, get_settings
from conveyor.spec import Deployment
from conveyor.targets.base import Launch, ReplicaRecord, new_record


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


class ScaleClient(Protocol):
    """The calls of ``kubernetes.dynamic.DynamicClient`` the target makes (the cluster API's boundary)."""

    @property
    def resources(self) -> Any: ...

    def get(
        self, resource: Any, name: str | None = None, namespace: str | None = None, **kwargs: Any
    ) -> Any: ...

    def patch(
        self,
        resource: Any,
        body: Any = None,
        name: str | None = None,
        namespace: str | None = None,
        **kwargs: Any,
    ) -> Any: ...


def object_name(deployment: str, version: str) -> str:
    """The replica Deployment object of a model version (k8s/names.py: replica_name)."""
    return dns_label(f"{deployment}-v{version}")


class KubernetesTarget:
    """The ``Target`` of a cluster: it runs the pods, so a replica record here is one unit of a version's
    Deployment object's ``spec.replicas`` (the object, its Service and the rest applied first by
    ``apply_to_cluster``). ``create`` and ``stop`` change that count (the cluster chooses which pod goes,
    and drains it with SIGTERM and its grace period either way); ``alive`` and ``log_tail`` say what the
    API says. The pods serve V2 REST behind the version's Service, reached by the cluster's gateways, not
    by this control plane's channel: ``endpoint`` is None."""

    kind = "kubernetes"

    def __init__(self, client: ScaleClient, namespace: str, where: str) -> None:
        self.client = client
        self.namespace = namespace
        self.where = where

    @classmethod
    def connect(cls, context: str | None = None) -> KubernetesTarget:
        cluster = connect(context)
        return cls(cast(ScaleClient, cluster.client), cluster.namespace, cluster.where)

    def _resource(self) -> Any:
        return self.client.resources.get(api_version="apps/v1", kind="Deployment")

    def observe(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """What the API says of a Deployment object: its ``spec`` count, ``status`` counts and conditions;
        None when there is no such object. Unavailable, one line, when the API does not answer."""
        namespace = namespace or self.namespace
        try:
            obj = self.client.get(self._resource(), name=name, namespace=namespace)
        except Exception as exc:  # the client's NotFoundError and other ApiExceptions, urllib3 errors
            if getattr(exc, "status", None) == 404:
                return None
            raise self._failed(f"reading deployment/{name}", exc) from None
        data: dict[str, Any] = obj.to_dict()
        return {"spec": data.get("spec") or {}, "status": data.get("status") or {}}

    def _scale(self, name: str, namespace: str, by: int) -> int:
        seen = self.observe(name, namespace)
        if seen is None:
            raise errors.Unavailable(
                f"kubernetes: no deployment/{name} in namespace {namespace} of {self.where}: apply it first"
            )
        count = max(0, int(seen["spec"].get("replicas") or 0) + by)
        try:
            self.client.patch(
                self._resource(),
                body={"spec": {"replicas": count}},
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
            )
        except Exception as exc:
            raise self._failed(f"scaling deployment/{name}", exc) from None
        return count

    def create(self, launch: Launch) -> ReplicaRecord:
        name = object_name(launch.deployment, launch.version)
        count = self._scale(name, self.namespace, +1)
        details = {"object": name, "namespace": self.namespace, "replicas": str(count)}
        return new_record(launch, f"{name}-{secrets.token_hex(3)}", target=self.kind, details=details)

    def endpoint(self, record: ReplicaRecord) -> str | None:
        return None

    def stop(self, record: ReplicaRecord, *, drain: bool) -> None:
        with contextlib.suppress(errors.Unavailable):  # its object is gone: so is the replica
            self._scale(*self._where(record), -1)

    def alive(self, record: ReplicaRecord) -> bool:
        """While its object exists and counts a replica (the cluster replaces a pod that dies)."""
        try:
            seen = self.observe(*self._where(record))
        except errors.Unavailable:
            return True  # the API away says nothing of the pods: they keep running
        return seen is not None and int(seen["spec"].get("replicas") or 0) > 0

    def exit_code(self, record: ReplicaRecord) -> int | None:
        return None  # pods are restarted by the cluster; their exits are its to tell

    def log_tail(self, record: ReplicaRecord, lines: int = 5) -> str:
        """The object's replica counts and its conditions that are not true, as the API gives them."""
        try:
            seen = self.observe(*self._where(record))
        except errors.Unavailable as exc:
            return exc.message
        if seen is None:
            return f"no deployment/{record.details.get('object')}"
        status = seen["status"]
        counts = f"{status.get('readyReplicas') or 0}/{seen['spec'].get('replicas') or 0} ready"
        failing = [
            f"{c.get('type')}={c.get('status')}: {c.get('message') or c.get('reason') or ''}".rstrip(": ")
            for c in status.get("conditions") or []
            if c.get("status") != "True"
        ]
        return " | ".join([counts, *failing][: max(lines, 1)])

    def adopt(self, record: ReplicaRecord) -> bool:
        return self.alive(record)

    def keepalive(self) -> None:
        pass  # the cluster keeps its pods; nothing waits for this control plane

    def forget(self, record: ReplicaRecord) -> None:
        pass

    async def stop_all(self, records: Sequence[ReplicaRecord], timeout_s: float) -> None:
        for record in records:
            await asyncio.to_thread(self.stop, record, drain=True)

    def release(self) -> None:
        pass

    def _failed(self, what: str, exc: Exception) -> errors.Unavailable:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]
        return errors.Unavailable(f"kubernetes: {what} in {self.where} failed: {first}")

    def _where(self, record: ReplicaRecord) -> tuple[str, str]:
        name = record.details.get("object") or object_name(record.deployment, record.version)
        return name, record.details.get("namespace") or self.namespace
