"""The applier against a fake dynamic client (the call sequence only: no cluster runs here), and its
one-line error where no cluster is configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor import errors
from conveyor.k8s import Options, deployment_objects
from conveyor.k8s.apply import Cluster, apply_objects, connect
from tests.unit.k8s.specs import served


class FakeResources:
    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls

    def get(self, *, api_version: str, kind: str) -> str:
        self.calls.append(("get", api_version, kind))
        return f"{api_version}/{kind}"


class FakeDynamic:
    """Records what a DynamicClient would be asked; refuses the kind in ``refuse``."""

    def __init__(self, refuse: str | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.refuse = refuse

    @property
    def resources(self) -> FakeResources:
        return FakeResources(self.calls)

    def server_side_apply(self, resource: Any, body: Any = None, **kwargs: Any) -> Any:
        if body["kind"] == self.refuse:
            raise RuntimeError(f"(422)\nReason: Unprocessable Entity: {body['kind']} is invalid")
        self.calls.append(("apply", resource, body["metadata"]["namespace"], kwargs))
        return body


def test_each_object_is_server_side_applied_in_order_as_conveyor_taking_over_conflicts() -> None:
    objects = deployment_objects(served(autoscaling={"maxReplicas": 3}), Options(namespace="ml"))
    fake = FakeDynamic()
    done = apply_objects(Cluster(fake, "default", "context test"), objects)
    assert done == [
        "deployment/iris-v3",
        "service/iris-v3",
        "horizontalpodautoscaler/iris-v3",
        "poddisruptionbudget/iris-v3",
        "networkpolicy/iris-v3",
    ]
    gets = [c[1:] for c in fake.calls if c[0] == "get"]
    assert gets[0] == ("apps/v1", "Deployment")
    assert gets[2] == ("autoscaling/v2", "HorizontalPodAutoscaler")
    applies = [c for c in fake.calls if c[0] == "apply"]
    assert [a[1] for a in applies] == [f"{o['apiVersion']}/{o['kind']}" for o in objects]
    for call in applies:
        assert call[2] == "ml"  # the object's namespace, not the context's
        assert call[3] == {
            "name": "iris-v3",
            "namespace": "ml",
            "field_manager": "conveyor",
            "force_conflicts": True,
        }


def test_an_object_without_a_namespace_goes_to_the_contexts() -> None:
    obj = deployment_objects(served(), Options())[0]
    obj["metadata"].pop("namespace")
    fake = FakeDynamic()
    apply_objects(Cluster(fake, "team-a", "context test"), [obj])
    assert fake.calls[-1][2] == "team-a"


def test_a_refused_object_is_one_line_naming_it_and_what_was_applied_before() -> None:
    objects = deployment_objects(served(), Options())
    with pytest.raises(errors.Unavailable) as caught:
        apply_objects(Cluster(FakeDynamic(refuse="Service"), "default", "context kind-dev"), objects)
    assert caught.value.message == (
        "kubernetes: applying service/iris-v3 in context kind-dev failed: (422) "
        "(applied before it: deployment/iris-v3)"
    )


def test_no_kubeconfig_and_no_cluster_around_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.config import kube_config

    # The client reads KUBECONFIG once, at its import: set where it keeps it too.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "missing"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(errors.Unavailable) as caught:
        connect()
    message = caught.value.message
    assert message.startswith("kubernetes: no cluster configured: no usable kubeconfig (")
    assert message.endswith("and not running in a cluster")
    assert "\n" not in message
