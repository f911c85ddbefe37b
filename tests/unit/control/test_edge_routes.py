"""The edge routes over a real SQLite registry, the API in-process (docs/edge.md): what a node should serve,
with its ETag and a 304 for an unchanged one; the labels a deployment asks; a rollout's stable version and a
rollback; an artifact whole, from a byte (206) or refused past its end (416); the rows of GET /edges."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conveyor.control import edge_ops
from conveyor.control.management import create_api
from conveyor.errors import InvalidInput
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.registry.edges import Heartbeat
from conveyor.settings import Settings
from tests.fixtures.control_runtime import FakeRuntime

SIG: dict[str, Any] = {"inputs": [], "outputs": []}
V1, V2 = b"version one bytes", b"version two bytes, a little longer"


def deployment(version: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": f"clf:{version}"}
    if labels is not None:
        spec["edges"] = {"labels": labels}
    return {"apiVersion": "conveyor.dev/v1", "kind": "Deployment", "metadata": {"name": "clf"}, "spec": spec}


class Api:
    def __init__(self, tmp_path: Path) -> None:
        self.registry = Registry(
            f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t"
        )
        for content in (V1, V2):
            self.registry.register("clf", content, signature=SIG, framework="onnx")
        token, _ = self.registry.tokens.create("ops", "admin")
        edge, _ = self.registry.tokens.create("nodes", "edge")
        self.client = TestClient(
            create_api(self.registry, FakeRuntime(self.registry), Settings(home=tmp_path))
        )
        self.client.__enter__()
        self.admin = {"authorization": f"Bearer {token}"}
        self.edge = {"authorization": f"Bearer {edge}"}

    def apply(self, version: int, labels: dict[str, str] | None = None) -> None:
        body = {"documents": [deployment(version, labels)]}
        assert self.client.post("/api/v1/apply", json=body, headers=self.admin).status_code == 200

    def register(self, name: str, labels: dict[str, str]) -> None:
        body = {"deployment": "clf", "labels": labels}
        assert self.client.put(f"/api/v1/edges/{name}", json=body, headers=self.edge).status_code == 200

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.registry.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    a = Api(tmp_path)
    try:
        yield a
    finally:
        a.close()


def test_a_node_learns_its_version_once_and_then_gets_304_until_the_deployment_changes(api: Api) -> None:
    api.apply(1, {"site": "shop"})
    api.register("shop-1", {"site": "shop", "floor": "2"})
    first = api.client.get("/api/v1/edges/shop-1/desired", headers=api.edge)
    assert first.status_code == 200
    doc = first.json()
    assert doc["model"] == "clf" and doc["version"] == "1" and doc["sha256"] == hashlib.sha256(V1).hexdigest()
    assert doc["artifact"] == "/api/v1/artifacts/clf/1" and doc["size"] == len(V1)
    assert doc["requireSignedModels"] is False and doc["signatures"] == []
    etag = first.headers["etag"]
    again = api.client.get("/api/v1/edges/shop-1/desired", headers={**api.edge, "if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    api.apply(2, {"site": "shop"})
    moved = api.client.get("/api/v1/edges/shop-1/desired", headers={**api.edge, "if-none-match": etag})
    assert moved.status_code == 200 and moved.json()["version"] == "2" and moved.headers["etag"] != etag
    assert api.client.post("/api/v1/deployments/clf/rollback", headers=api.admin).status_code == 200
    back = api.client.get("/api/v1/edges/shop-1/desired", headers=api.edge).json()
    assert back["version"] == "1" and back["revision"] == 3  # a rollback is followed like any change


def test_a_node_without_the_labels_the_deployment_asks_is_told_why(api: Api) -> None:
    api.apply(1, {"site": "shop"})
    api.register("lab-1", {"site": "lab"})
    r = api.client.get("/api/v1/edges/lab-1/desired", headers=api.edge)
    assert r.status_code == 409
    assert "lacks the label(s) site=shop" in r.json()["error"]
    rows = api.client.get("/api/v1/edges", headers=api.admin).json()["edges"]
    assert (
        rows[0]["name"] == "lab-1" and "site=shop" in rows[0]["followProblem"] and rows[0]["behind"] is None
    )


def test_during_a_rollout_nodes_stay_on_the_stable_version(api: Api) -> None:
    api.apply(1)
    api.register("shop-1", {})
    r = api.client.post("/api/v1/deployments/clf/rollout", json={"to": "clf:2"}, headers=api.admin)
    assert r.status_code == 200, r.text
    doc = api.client.get("/api/v1/edges/shop-1/desired", headers=api.edge).json()
    assert doc["version"] == "1" and doc["rollout"]["candidate"] == "clf:2"


def test_an_artifact_comes_whole_or_from_a_byte_and_a_range_past_its_end_is_416(api: Api) -> None:
    url, etag = "/api/v1/artifacts/clf/2", f'"{hashlib.sha256(V2).hexdigest()}"'
    whole = api.client.get(url, headers=api.edge)
    assert whole.status_code == 200 and whole.content == V2 and whole.headers["etag"] == etag
    assert whole.headers["accept-ranges"] == "bytes"
    rest = api.client.get(url, headers={**api.edge, "range": "bytes=10-", "if-range": etag})
    assert rest.status_code == 206 and rest.content == V2[10:]
    assert rest.headers["content-range"] == f"bytes 10-{len(V2) - 1}/{len(V2)}"
    other = api.client.get(url, headers={**api.edge, "range": "bytes=10-", "if-range": '"other"'})
    assert other.status_code == 200 and other.content == V2  # not the bytes the node holds a part of
    past = api.client.get(url, headers={**api.edge, "range": f"bytes={len(V2)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(V2)}"
    assert api.client.get("/api/v1/artifacts/clf/9", headers=api.edge).status_code == 404


def test_get_edges_says_who_is_behind_and_for_how_long(api: Api) -> None:
    api.apply(1)
    api.register("shop-1", {})
    api.register("shop-2", {})
    api.registry.edges.heartbeat("shop-1", Heartbeat("1", "serving", 5))
    api.registry.edges.heartbeat("shop-2", Heartbeat(None, "empty", 0, 0, "cannot reach it"))
    rows = {r["name"]: r for r in api.client.get("/api/v1/edges", headers=api.admin).json()["edges"]}
    assert rows["shop-1"]["behind"] is False and rows["shop-1"]["lagSeconds"] == 0.0
    assert rows["shop-2"]["behind"] is True and rows["shop-2"]["lagSeconds"] >= 0.0
    assert rows["shop-2"]["problem"] == "cannot reach it" and rows["shop-2"]["desired"] == "1"


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        (None, 10, None),
        ("bytes=0-", 10, (0, 10)),
        ("bytes=3-5", 10, (3, 6)),
        ("bytes=3-99", 10, (3, 10)),
        ("bytes=-4", 10, None),
        ("bytes=1-2,5-6", 10, None),
        ("items=1-", 10, None),
    ],
)
def test_byte_range_reads_one_range_and_leaves_other_forms_to_a_whole_answer(
    header: str | None, size: int, span: tuple[int, int] | None
) -> None:
    assert edge_ops.byte_range(header, size) == span


def test_a_range_from_the_end_or_backwards_is_not_satisfiable() -> None:
    for header in ("bytes=10-", "bytes=5-3"):
        with pytest.raises(InvalidInput):
            edge_ops.byte_range(header, 10)
