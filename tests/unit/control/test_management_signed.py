"""POST /api/v1/apply under requireSignedModels: 400 with one {"error"} line naming the deployment and the
version; the setting require_signed_models applies it to every spec; a trusted signature applies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conveyor.control.management import create_api
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.security import signing
from conveyor.settings import Settings
from tests.fixtures.control_runtime import FakeRuntime

SIG: dict[str, Any] = {"inputs": [], "outputs": []}


def doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "tiny"},
        "spec": {"model": "tiny:1", **spec},
    }


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t") as reg:
        reg.register("tiny", b"v1", signature=SIG, framework="onnx")
        yield reg


def client(registry: Registry, settings: Settings) -> TestClient:
    token, _ = registry.tokens.create("api-user", "admin")
    app = create_api(registry, FakeRuntime(registry), settings)
    return TestClient(app, headers={"authorization": f"Bearer {token}"})


def post(c: TestClient, document: dict[str, Any]) -> Any:
    return c.post("/api/v1/apply", json={"documents": [document]})


def test_an_unsigned_version_is_a_400_naming_it(registry: Registry, tmp_path: Path) -> None:
    with client(registry, Settings(home=tmp_path)) as c:
        r = post(c, doc(requireSignedModels=True))
        assert r.status_code == 400
        assert r.json()["error"] == (
            "deployment 'tiny': model tiny:1 is not signed (requireSignedModels; sign it: "
            "conveyor models sign tiny:1)"
        )
        assert post(c, doc()).status_code == 200  # not required by this spec


def test_the_setting_requires_it_of_every_deployment_and_a_trusted_signature_passes(
    registry: Registry, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, require_signed_models=True)
    signing.create_keypair(settings.keys_dir, "ci")
    with client(registry, settings) as c:
        assert "is not signed" in post(c, doc()).json()["error"]
        registry.sign_version(registry.resolve("tiny:1"), signing.load_private_key(settings.keys_dir, "ci"))
        r = post(c, doc())
        assert r.status_code == 200 and r.json()["results"][0]["model"] == "tiny:1"
