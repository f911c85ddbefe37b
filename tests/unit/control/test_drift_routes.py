"""``GET /api/v1/deployments/{name}/drift``: the stack history's drift gauges per version, with each
version's reference and a status by the PSI thresholds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conveyor.control.management import create_api
from conveyor.formats.signature import Signature
from conveyor.observe.history import StackHistory
from conveyor.observe.reference import compute_reference
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.settings import Settings
from tests.fixtures.control_runtime import FakeRuntime

SIG: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}], "outputs": []}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    rows = np.random.default_rng(0).normal(size=(500, 2))
    reference = compute_reference(rows, Signature.from_dict(SIG), source="sample")
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t") as reg:
        reg.register("tiny", b"v1", signature=SIG, framework="onnx")  # registered before references
        reg.register("tiny", b"v2", signature=SIG, framework="onnx", metadata={"reference": reference})
        yield reg


@pytest.fixture
def client(registry: Registry, tmp_path: Path) -> Iterator[TestClient]:
    token, _ = registry.tokens.create("viewer", "viewer")
    admin, _ = registry.tokens.create("admin", "admin")
    app = create_api(registry, FakeRuntime(registry), Settings(home=tmp_path))
    with TestClient(app, headers={"authorization": f"Bearer {token}"}) as c:
        doc = {"apiVersion": "conveyor.dev/v1", "kind": "Deployment", "metadata": {"name": "web"}}
        r = c.post(
            "/api/v1/apply",
            json={"documents": [{**doc, "spec": {"model": "tiny:2"}}]},
            headers={"authorization": f"Bearer {admin}"},
        )
        assert r.status_code == 200, r.text
        yield c


def gauge(
    name: str, version: str, feature: str, value: float, replica: str
) -> tuple[str, dict[str, str], float]:
    labels = {
        "model": "web",
        "version": version,
        "feature": feature,
        "component": "replica",
        "instance": replica,
    }
    return (name, labels, value)


def test_each_version_gets_its_features_worst_replica_and_status(client: TestClient) -> None:
    history = StackHistory()
    history.add(
        1.0,
        [
            gauge("conveyor_drift_psi", "2", "x[0]", 0.05, "r1"),
            gauge("conveyor_drift_psi", "2", "x[0]", 0.4, "r2"),  # the worst replica counts
            gauge("conveyor_drift_psi", "2", "x[1]", 0.12, "r1"),
            gauge("conveyor_drift_mean_shift", "2", "x[0]", 2.1, "r2"),
            gauge("conveyor_drift_mean_shift", "2", "x[1]", 0.3, "r1"),
            gauge("conveyor_drift_psi", "1", "x[0]", 0.01, "r3"),
        ],
    )
    client.app.state.history = history  # type: ignore[attr-defined]
    body = client.get("/api/v1/deployments/web/drift").json()
    assert body["thresholds"] == {"warn": 0.1, "drift": 0.25}
    v1, v2 = body["versions"]
    assert v1["version"] == "1" and v1["reference"]["available"] is False
    assert "registered before reference statistics" in v1["reference"]["reason"]
    assert v2["reference"] == {
        "available": True,
        "source": "sample",
        "rows": 500,
        "bins": 10,
        "skipped": [],
        "features": 2,
    }
    assert v2["features"] == [
        {"feature": "x[0]", "psi": 0.4, "mean_shift": 2.1, "status": "drift"},
        {"feature": "x[1]", "psi": 0.12, "mean_shift": 0.3, "status": "warn"},
    ]


def test_before_any_scrape_the_current_version_is_listed_without_features(client: TestClient) -> None:
    body = client.get("/api/v1/deployments/web/drift").json()
    assert [(v["version"], v["features"]) for v in body["versions"]] == [("2", [])]
    assert body["versions"][0]["reference"]["available"] is True


def test_an_unknown_deployment_is_404(client: TestClient) -> None:
    r = client.get("/api/v1/deployments/nope/drift")
    assert r.status_code == 404 and "nope" in r.json()["error"]
