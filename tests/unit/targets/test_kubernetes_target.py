"""``target: kubernetes`` through apply: the deployment's objects go to the cluster before anything is
stored, a missing cluster refuses the apply in one line, and the local reconciler leaves it alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import errors
from conveyor.control.desired import DesiredLoader
from conveyor.control.management_ops import apply_documents
from conveyor.k8s import ArtifactSource
from conveyor.k8s.apply import Cluster
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.settings import Settings
from conveyor.spec import Deployment
from conveyor.targets.kubernetes import apply_to_cluster, artifact_source
from tests.unit.k8s.test_apply import FakeDynamic

SIG: dict[str, Any] = {"inputs": [], "outputs": []}


def doc(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"model": "m:1", "replicas": 2, "target": "kubernetes", **spec},
    }


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t") as reg:
        reg.register("m", b"version one", signature=SIG, framework="onnx")
        yield reg


@pytest.fixture
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes.config import kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.mark.usefixtures("no_cluster")
def test_without_a_cluster_the_apply_is_refused_in_one_line_and_nothing_is_stored(registry: Registry) -> None:
    with pytest.raises(
        errors.Unavailable, match=r"^kubernetes: no cluster configured: .*not running in a cluster$"
    ):
        apply_documents(registry, [doc()], dry_run=False, user="t")
    assert registry.deployments.list() == []


@pytest.mark.usefixtures("no_cluster")
def test_a_dry_run_contacts_no_cluster(registry: Registry) -> None:
    (result,) = apply_documents(registry, [doc()], dry_run=True, user="t")
    assert result["changed"] is True
    assert result["model"] == "m:1"


def test_a_rollout_is_refused_with_target_kubernetes_and_ray_without_a_cluster(registry: Registry) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        apply_documents(registry, [doc(rollout={}), doc("r", target="ray")], dry_run=True, user="t")
    assert caught.value.message.splitlines() == [
        "documents[0].spec.rollout: rollouts run on the local target; with target: kubernetes leave "
        "spec.rollout out (each model version is a Deployment of its own)",
        "documents[1].spec.target: the ray target needs a Ray cluster: set CONVEYOR_RAY_ADDRESS to its head "
        "(HOST:PORT) on the control plane (docs/ray.md)",
    ]


def test_the_objects_go_to_the_namespace_of_the_current_context(registry: Registry, tmp_path: Path) -> None:
    fake = FakeDynamic()
    version = registry.resolve("m:1")
    done = apply_to_cluster(
        [(Deployment.model_validate(doc()), version)], Settings(home=tmp_path), Cluster(fake, "team-a", "ctx")
    )
    assert done == [
        "deployment/web-v1",
        "service/web-v1",
        "poddisruptionbudget/web-v1",
        "networkpolicy/web-v1",
    ]
    applied = [c for c in fake.calls if c[0] == "apply"]
    assert {c[2] for c in applied} == {"team-a"}


def test_the_local_reconciler_leaves_a_kubernetes_deployment_to_the_cluster(
    registry: Registry, tmp_path: Path
) -> None:
    registry.deployments.apply(doc(), "f" * 64, model="m:1")
    loader = DesiredLoader(registry, Settings(home=tmp_path))
    assert loader.load() == {}
    assert loader.problems == {}


def test_the_artifact_source_is_the_s3_store_of_the_settings_else_the_home_volume(tmp_path: Path) -> None:
    s3 = Settings(home=tmp_path, artifacts_url="s3://b/p", s3_endpoint_url="http://minio:9000", s3_region="r")
    assert artifact_source(s3) == ArtifactSource("s3://b/p", "http://minio:9000", "r")
    assert artifact_source(Settings(home=tmp_path)) == ArtifactSource()


def test_scale_and_rollback_of_a_kubernetes_deployment_are_refused_naming_apply(registry: Registry) -> None:
    from conveyor.control.management_ops import rollback, scale

    registry.deployments.apply(doc(), "f" * 64, model="m:1")
    with pytest.raises(errors.Conflict, match="runs on kubernetes: to scale it, change its file and apply"):
        scale(registry, "web", 3, user="t")
    with pytest.raises(errors.Conflict, match="runs on kubernetes: to roll it back, change its file"):
        rollback(registry, "web", None, user="t")
    assert [r.revision for r in registry.deployments.history("web")] == [1]
