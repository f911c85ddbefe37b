"""The kubernetes target as a ``Target``: a replica is one unit of its version's Deployment object's count,
changed and read through the kubernetes client's dynamic API (a cluster of the client's own objects here:
no cluster runs on this machine)."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ServiceUnavailableError
from kubernetes.dynamic.resource import ResourceInstance

from conveyor import errors
from conveyor.k8s import Options, deployment_objects
from conveyor.k8s.names import replica_name
from conveyor.targets.base import Launch, Target
from conveyor.targets.kubernetes import KubernetesTarget, object_name
from tests.unit.k8s.specs import served


class FakeResources:
    def get(self, *, api_version: str, kind: str) -> str:
        return f"{api_version}/{kind}"


class ObjectsCluster:
    """A dynamic client over stored objects: server-side apply stores, get answers ResourceInstances or
    the client's NotFoundError, patch merges; ``down`` makes every call fail as an API server away does."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.patches: list[tuple[str, dict[str, Any], str]] = []
        self.down = False

    @property
    def resources(self) -> FakeResources:
        return FakeResources()

    def _check(self) -> None:
        if self.down:
            raise ServiceUnavailableError(ApiException(status=503, reason="Service Unavailable"))

    def server_side_apply(self, resource: Any, body: Any = None, **kwargs: Any) -> Any:
        self._check()
        self.objects[(resource, kwargs["namespace"], kwargs["name"])] = copy.deepcopy(body)
        return body

    def get(self, resource: Any, name: str | None = None, namespace: str | None = None, **kw: Any) -> Any:
        self._check()
        obj = self.objects.get((resource, namespace or "", name or ""))
        if obj is None:
            raise NotFoundError(ApiException(status=404, reason="Not Found"))
        return ResourceInstance(self, copy.deepcopy(obj))

    def patch(
        self,
        resource: Any,
        body: Any = None,
        name: str | None = None,
        namespace: str | None = None,
        **kw: Any,
    ) -> Any:
        self._check()
        obj = self.objects[(resource, namespace or "", name or "")]
        obj["spec"].update(body["spec"])
        self.patches.append((name or "", body, kw["content_type"]))
        return ResourceInstance(self, obj)


def launch(version: str = "3") -> Launch:
    return Launch("iris", 1, "abcdef0123", "iris", version, Path("/m.onnx"), "ab" * 32, {})


@pytest.fixture
def cluster() -> ObjectsCluster:
    """The iris:3 objects (2 replicas) as apply_to_cluster leaves them in namespace ml."""
    fake = ObjectsCluster()
    for obj in deployment_objects(served(replicas=2), Options(namespace="ml")):
        fake.server_side_apply(
            f"{obj['apiVersion']}/{obj['kind']}", body=obj, name=obj["metadata"]["name"], namespace="ml"
        )
    return fake


def deployment(cluster: ObjectsCluster) -> dict[str, Any]:
    return cluster.objects[("apps/v1/Deployment", "ml", "iris-v3")]


def test_the_object_of_a_replica_is_its_versions_deployment() -> None:
    assert object_name("iris", "3") == replica_name(served()) == "iris-v3"


def test_create_and_stop_change_the_count_of_the_versions_deployment(cluster: ObjectsCluster) -> None:
    target: Target = KubernetesTarget(cluster, "ml", "context test")
    record = target.create(launch())
    assert deployment(cluster)["spec"]["replicas"] == 3
    assert cluster.patches == [("iris-v3", {"spec": {"replicas": 3}}, "application/merge-patch+json")]
    assert (record.target, record.pid, record.address) == ("kubernetes", 0, "")
    assert record.details == {"object": "iris-v3", "namespace": "ml", "replicas": "3"}
    assert record.id.startswith("iris-v3-") and target.endpoint(record) is None
    assert target.alive(record) and target.adopt(record) and target.exit_code(record) is None
    target.stop(record, drain=True)
    assert deployment(cluster)["spec"]["replicas"] == 2
    asyncio.run(target.stop_all([record, record], timeout_s=1))
    assert deployment(cluster)["spec"]["replicas"] == 0  # never below zero
    assert not target.alive(record)


def test_the_log_tail_is_what_the_api_says_of_the_object(cluster: ObjectsCluster) -> None:
    target = KubernetesTarget(cluster, "ml", "context test")
    record = target.create(launch())
    deployment(cluster)["status"] = {
        "readyReplicas": 1,
        "conditions": [
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "True", "message": "ReplicaSet is progressing"},
        ],
    }
    assert target.log_tail(record) == "1/3 ready | Available=False: MinimumReplicasUnavailable"
    seen = target.observe("iris-v3")
    assert seen is not None and seen["spec"]["replicas"] == 3 and seen["status"]["readyReplicas"] == 1


def test_a_version_never_applied_is_refused_in_one_line_naming_its_object(cluster: ObjectsCluster) -> None:
    target = KubernetesTarget(cluster, "ml", "context test")
    with pytest.raises(errors.Unavailable) as caught:
        target.create(launch("4"))
    assert caught.value.message == (
        "kubernetes: no deployment/iris-v4 in namespace ml of context test: apply it first"
    )
    assert target.observe("iris-v4") is None


def test_an_api_server_away_is_one_line_and_its_replicas_count_as_running(cluster: ObjectsCluster) -> None:
    target = KubernetesTarget(cluster, "ml", "context test")
    record = target.create(launch())
    cluster.down = True
    with pytest.raises(errors.Unavailable) as caught:
        target.create(launch())
    assert caught.value.message.startswith("kubernetes: reading deployment/iris-v3 in context test failed: ")
    assert "\n" not in caught.value.message
    assert target.alive(record)  # the pods do not stop because the API does not answer
    target.stop(record, drain=False)  # nothing to do now: no error
    assert deployment(cluster)["spec"]["replicas"] == 3
