"""The ray target's decisions that need no cluster: what is missing to run it, and what a replica actor is
started with (tests/e2e/test_ray_target.py runs it on a real two-node cluster)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import errors
from conveyor.control.management_ops import validate_documents
from conveyor.settings import Settings, get_settings
from conveyor.targets.base import Launch
from conveyor.targets.ray import ray_problem, ray_target, replica_arguments


def launch(options: dict[str, Any]) -> Launch:
    return Launch("clf", 3, "abcdef1234", "iris", "2", Path("/nowhere.onnx"), "ab" * 32, options)


def test_without_an_address_the_ray_target_is_refused_naming_the_setting(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert ray_problem(settings) == (
        "the ray target needs a Ray cluster: set CONVEYOR_RAY_ADDRESS to its head (HOST:PORT) on the "
        "control plane (docs/ray.md)"
    )
    with pytest.raises(errors.InvalidInput, match="CONVEYOR_RAY_ADDRESS"):
        ray_target(settings)


def test_without_the_ray_extra_the_ray_target_is_refused_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "ray" else real(name))
    problem = ray_problem(Settings(home=tmp_path, ray_address="127.0.0.1:6379"))
    assert problem == "the ray target needs the ray extra on the control plane: pip install 'conveyor[ray]'"


def test_a_replica_actor_gets_a_local_replicas_options_on_a_tcp_channel_of_its_node() -> None:
    options = {"max_batch_size": 8, "intra_op_threads": 2, "cache_ttl": None, "sha256": "clf:2=" + "ab" * 32}
    files, args = replica_arguments(launch(options), "clf-abcdef-123456")
    assert files == {}
    assert args == [
        "--model",
        "clf:2={dir}/model.onnx",
        "--channel",
        "tcp:{ip}:0",
        "--replica-id",
        "clf-abcdef-123456",
        "--max-batch-size",
        "8",
        "--intra-op-threads",
        "2",
        "--sha256",
        "clf:2=" + "ab" * 32,
    ]


def test_a_monitor_document_travels_with_the_call_and_is_read_from_the_actors_folder(tmp_path: Path) -> None:
    doc = tmp_path / "monitor-1234.json"
    doc.write_bytes(b'{"drift": {}}')
    files, args = replica_arguments(launch({"monitor": f"clf:2={doc}"}), "r")
    assert files == {"monitor.json": b'{"drift": {}}'}
    assert args[-2:] == ["--monitor", "clf:2={dir}/monitor.json"]


def test_a_monitor_document_that_cannot_be_read_is_unavailable_naming_it(tmp_path: Path) -> None:
    with pytest.raises(errors.Unavailable, match=r"cannot read .*gone\.json"):
        replica_arguments(launch({"monitor": f"clf:2={tmp_path / 'gone.json'}"}), "r")


@pytest.fixture
def ray_address(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's settings name a Ray cluster (apply reads them; nothing connects)."""
    monkeypatch.setenv("CONVEYOR_RAY_ADDRESS", "127.0.0.1:6379")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def ray_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "clf"},
        "spec": {"model": "m:1", "replicas": 2, "target": "ray", **spec},
    }


@pytest.mark.usefixtures("ray_address")
def test_with_an_address_a_ray_deployment_is_accepted_but_not_in_the_gateways_nor_on_a_gpu() -> None:
    (resource,) = validate_documents([ray_doc()])
    assert resource.spec.target == "ray"
    with pytest.raises(errors.InvalidInput) as caught:
        validate_documents([ray_doc(placement="inprocess", replicas=1)])
    assert caught.value.message == (
        "documents[0].spec.placement: inprocess runs in the gateways; with target: ray leave it out"
    )
    with pytest.raises(errors.InvalidInput) as caught:
        validate_documents([ray_doc(resources={"gpu": 1})])
    assert caught.value.message == (
        "documents[0].spec.resources.gpu: the ray target runs replicas on CPUs only"
    )
