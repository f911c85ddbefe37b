"""The management API's limits: CORS off unless configured, and no route that serves model files back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conveyor.control.management import create_api
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.settings import Settings
from tests.fixtures.control_runtime import FakeRuntime

ORIGIN = "https://ops.example.com"
ARTIFACT = b"ONNX-BYTES-THAT-MUST-NEVER-COME-BACK" * 8
SIG: dict[str, list[object]] = {"inputs": [], "outputs": []}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t") as reg:
        reg.register("tiny", ARTIFACT, signature=SIG, framework="onnx", aliases=["prod"])
        yield reg


def client_for(registry: Registry, tmp_path: Path, **settings: object) -> TestClient:
    headers = {}
    tokens = getattr(registry, "tokens", None)  # the management API takes bearer tokens
    if tokens is not None:
        token, _ = tokens.create("limits", "admin")
        headers["authorization"] = f"Bearer {token}"
    app = create_api(registry, FakeRuntime(registry), Settings(home=tmp_path, **settings))  # type: ignore[arg-type]
    return TestClient(app, headers=headers)


def test_the_management_api_sends_no_cors_headers_by_default(registry: Registry, tmp_path: Path) -> None:
    with client_for(registry, tmp_path) as client:
        preflight = client.options(
            "/api/v1/apply", headers={"origin": ORIGIN, "access-control-request-method": "POST"}
        )
        answer = client.get("/api/v1/models", headers={"origin": ORIGIN})
    assert preflight.status_code == 405 and answer.status_code == 200
    for r in (preflight, answer):
        assert not [h for h in r.headers if h.startswith("access-control-")], r.headers


def test_cors_origins_let_a_dashboard_on_that_origin_call_the_management_api(
    registry: Registry, tmp_path: Path
) -> None:
    with client_for(registry, tmp_path, cors_origins=[ORIGIN]) as client:
        preflight = client.options(
            "/api/v1/apply",
            headers={
                "origin": ORIGIN,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        answer = client.get("/api/v1/models", headers={"origin": ORIGIN})
        missing = client.get("/api/v1/models/nope", headers={"origin": ORIGIN})
    assert preflight.status_code == 200
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert (answer.status_code, missing.status_code) == (200, 404)
    for r in (preflight, answer, missing):
        assert r.headers["access-control-allow-origin"] == ORIGIN


def test_no_management_route_serves_a_model_file_back(registry: Registry, tmp_path: Path) -> None:
    """Every operation in the OpenAPI document answers JSON (the routing watch: NDJSON tables; the edge
    nodes' artifact download: the artifact, and only that route), and no other GET answer holds the
    artifact's bytes."""
    with client_for(registry, tmp_path) as client:
        deployment = {"apiVersion": "conveyor.dev/v1", "kind": "Deployment", "metadata": {"name": "tiny"}}
        deployment["spec"] = {"model": "tiny@prod", "replicas": 1}
        assert client.post("/api/v1/apply", json={"documents": [deployment]}).status_code == 200
        node = {"deployment": "tiny", "labels": {}}
        assert client.put("/api/v1/edges/tiny", json=node).status_code == 200  # for /edges/{name}/...
        paths = client.get("/openapi.json").json()["paths"]
        gets = []
        for path, operations in paths.items():
            for method, operation in operations.items():
                answers = set(operation["responses"]["200"].get("content", {}))
                if path == "/api/v1/routing/watch":
                    assert answers <= {"application/json", "application/x-ndjson"}
                    continue
                if path == "/api/v1/artifacts/{model}/{version}":
                    assert answers == {"application/octet-stream"}
                    continue
                assert answers == {"application/json"}, (method, path)
                if method == "get":
                    gets.append(path)
        assert len(gets) >= 10
        for path in gets:
            r = client.get(path.replace("{name}", "tiny"))
            if path.endswith("/rollout"):  # tiny never had a rollout: 404 saying so
                assert r.status_code == 404 and "no rollout" in r.json()["error"], r.text
                continue
            assert r.status_code == 200, (path, r.text)
            assert r.headers["content-type"] == "application/json", path
            assert ARTIFACT[:16] not in r.content, path


@pytest.mark.parametrize("path", ["/api/v1/apply", "/api/v1/diff", "/api/v1/deployments/tiny/scale"])
def test_a_body_nested_deeper_than_max_json_depth_gets_400_naming_the_limit(
    registry: Registry, tmp_path: Path, path: str
) -> None:
    deep: object = {}
    for _ in range(70):
        deep = [deep]
    with client_for(registry, tmp_path) as client:
        r = client.post(path, json={"documents": [{"metadata": deep}]})
    assert r.status_code == 400
    assert "nested more than 64 levels deep (the max_json_depth limit)" in r.json()["error"]
