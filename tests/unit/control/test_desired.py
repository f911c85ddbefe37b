"""DesiredLoader over a real SQLite registry: a corrupt artifact is a problem naming its version; it blocks
new replicas of it but keeps the deployment (what runs stays routed), and clears once the blob is intact."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.control.desired import DesiredLoader
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.settings import Settings

SIG: dict[str, Any] = {"inputs": [], "outputs": []}


def spec(model: str) -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"model": model, "replicas": 2},
    }


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t") as reg:
        reg.register("m", b"version one", signature=SIG, framework="onnx")
        reg.register("m", b"version two", signature=SIG, framework="onnx")
        yield reg


@pytest.fixture
def loader(registry: Registry, tmp_path: Path) -> DesiredLoader:
    return DesiredLoader(registry, Settings(home=tmp_path))


def apply(registry: Registry, model: str) -> None:
    registry.deployments.apply(spec(model), hashlib.sha256(model.encode()).hexdigest(), model=model)


def overwrite(registry: Registry, ref: str, data: bytes) -> str:
    sha = registry.resolve(ref).sha256
    blob = registry.artifact_location(registry.resolve(ref))
    os.chmod(blob, 0o644)
    blob.write_bytes(data)
    return sha


def test_the_replica_is_given_the_digest_it_must_verify(registry: Registry, loader: DesiredLoader) -> None:
    apply(registry, "m:1")
    d = loader.load()["web"]
    sha = registry.resolve("m:1").sha256
    assert d.sha256 == sha and d.options["sha256"] == f"web:1={sha}"
    assert d.model_file == registry.artifact_location(registry.resolve("m:1"))
    assert not loader.blocked(d) and loader.problems == {}


def test_a_corrupt_artifact_is_a_problem_naming_the_version_and_blocks_starts(
    registry: Registry, loader: DesiredLoader
) -> None:
    apply(registry, "m:1")
    sha = overwrite(registry, "m:1", b"other bytes")
    desired = loader.load()
    assert desired["web"].sha256 == sha  # still there: its running replicas stay routed
    assert loader.blocked(desired["web"])
    assert loader.problems["web"].startswith(
        f"model m:1: artifact {sha} is corrupt: expected sha256 {sha}, got "
    )

    overwrite(registry, "m:1", b"version one")  # restored
    desired = loader.load()
    assert not loader.blocked(desired["web"]) and loader.problems == {}


def test_a_replica_that_refused_its_bytes_blocks_starts_of_a_version_verified_earlier(
    registry: Registry, loader: DesiredLoader
) -> None:
    apply(registry, "m:1")
    d = loader.load()["web"]  # verified once: later loads do not hash it again
    sha = overwrite(registry, "m:1", b"swapped later")
    assert loader.load() and loader.problems == {}
    assert loader.replica_refused(d.template, "artifact is corrupt") == "m:1"
    assert loader.blocked(d)
    loader.load()
    assert loader.problems["web"].startswith(f"model m:1: artifact {sha} is corrupt")


def test_the_running_version_corrupt_is_named_before_a_broken_new_revision(
    registry: Registry, loader: DesiredLoader
) -> None:
    apply(registry, "m:1")
    running = loader.load()
    sha2 = overwrite(registry, "m:2", b"bad two")
    apply(registry, "m:2")
    loader.load(running)
    assert loader.problems["web"].startswith(f"model m:2: artifact {sha2} is corrupt")

    sha1 = overwrite(registry, "m:1", b"bad one")
    loader.replica_refused(running["web"].template, "corrupt")
    loader.load(running)
    problem = loader.problems["web"]
    assert problem.startswith(f"running version model m:1: artifact {sha1} is corrupt"), problem
    assert f"; revision 2: model m:2: artifact {sha2} is corrupt" in problem


def test_a_missing_artifact_is_handled_as_a_corrupt_one(registry: Registry, loader: DesiredLoader) -> None:
    apply(registry, "m:1")
    version = registry.resolve("m:1")
    registry.artifact_location(version).unlink()
    d = loader.load()["web"]
    assert loader.blocked(d)
    assert loader.problems["web"].startswith(f"model m:1: artifact {version.sha256} not found")
