"""POST /api/v1/apply under requireValidated: 409 with one {"error"} line naming the deployment, the version
and the failed gates; a passing `conveyor validate` run lets it apply."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conveyor.control.management import create_api
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.settings import Settings
from tests.fixtures.control_runtime import FakeRuntime

SIG: dict[str, Any] = {"inputs": [], "outputs": []}
DOC = {
    "apiVersion": "conveyor.dev/v1",
    "kind": "Deployment",
    "metadata": {"name": "tiny"},
    "spec": {"model": "tiny:1", "requireValidated": True},
}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t") as reg:
        reg.register("tiny", b"v1", signature=SIG, framework="onnx")
        yield reg


def test_apply_is_a_409_until_a_validation_passes(registry: Registry, tmp_path: Path) -> None:
    token, _ = registry.tokens.create("api-user", "admin")
    app = create_api(registry, FakeRuntime(registry), Settings(home=tmp_path))
    with TestClient(app, headers={"authorization": f"Bearer {token}"}) as c:
        r = c.post("/api/v1/apply", json={"documents": [DOC]})
        assert r.status_code == 409
        assert r.json()["error"] == (
            "deployment 'tiny': model tiny:1 was never validated (requireValidated; validate it: "
            "conveyor validate tiny:1)"
        )
        registry.validations.record("tiny", 1, passed=False, gates=[{"gate": "stability", "passed": False}])
        r = c.post("/api/v1/apply", json={"documents": [DOC]})
        assert r.status_code == 409 and "failed its latest validation (stability, " in r.json()["error"]
        registry.validations.record("tiny", 1, passed=True, gates=[{"gate": "stability", "passed": True}])
        r = c.post("/api/v1/apply", json={"documents": [DOC]})
        assert r.status_code == 200 and r.json()["results"][0]["model"] == "tiny:1"
