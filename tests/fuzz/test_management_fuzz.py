"""The management API's request bodies under hypothesis, through the real app (FastAPI TestClient over
create_api, a real SQLite registry): whatever the body, never a 5xx, and every 4xx is {"error": ...}."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.control.management import create_api
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.settings import Settings
from tests.fixtures.control_runtime import FakeRuntime
from tests.fuzz.strategies import DEEP, FUZZ, dumps, json_values, spec_documents

SIG: dict[str, Any] = {"inputs": [], "outputs": []}
FUZZ_API = settings(FUZZ, max_examples=60)  # each example is several requests through the whole app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("api")
    with Registry(f"sqlite:///{home / 'r.db'}", LocalArtifactStore(home / "a"), user="t") as registry:
        registry.register("tiny", b"v1", signature=SIG, framework="onnx", aliases=["prod"])
        registry.register("tiny", b"v2", signature=SIG, framework="onnx")
        headers = {}
        tokens = getattr(registry, "tokens", None)  # the management API takes bearer tokens
        if tokens is not None:
            token, _ = tokens.create("fuzz", "admin")
            headers["authorization"] = f"Bearer {token}"
        app = create_api(registry, FakeRuntime(registry), Settings(home=Path(home)))
        with TestClient(app, headers=headers, raise_server_exceptions=False) as c:
            assert c.get("/api/v1/models").status_code == 200
            yield c


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        doc = r.json()
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], r.text


def post(client: TestClient, path: str, body: Any, raw: bool) -> None:
    content = dumps(body, raw) if not isinstance(body, bytes) else body
    check(client.post(path, content=content, headers={"content-type": "application/json"}))


documents_bodies = st.one_of(
    st.fixed_dictionaries(
        {"documents": st.lists(spec_documents(), max_size=3)},
        optional={"dryRun": st.one_of(st.booleans(), json_values), "extra": json_values},
    ),
    st.builds(lambda n: {"documents": [{"apiVersion": f"{DEEP}{n}"}]}, st.integers(1, 1100)),
    json_values,
    st.binary(max_size=100),
)
names = st.one_of(st.just("tiny"), st.text(min_size=1, max_size=20))


@FUZZ_API
@given(documents_bodies, st.booleans())
def test_any_body_to_apply_and_diff_gets_an_answer_or_a_4xx_error(
    client: TestClient, body: Any, raw: bool
) -> None:
    if isinstance(body, dict) and "dryRun" not in body:
        body["dryRun"] = True  # keep the deployments few; real applies come from the next test
    post(client, "/api/v1/apply", body, raw)
    post(client, "/api/v1/diff", body, raw)


@FUZZ_API
@given(
    names,
    st.one_of(st.fixed_dictionaries({"replicas": json_values}), json_values, st.binary(max_size=40)),
    st.one_of(st.fixed_dictionaries({"toRevision": json_values}), json_values, st.binary(max_size=40)),
    st.booleans(),
)
def test_any_body_to_scale_and_rollback_gets_an_answer_or_a_4xx_error(
    client: TestClient, name: str, scale: Any, rollback: Any, raw: bool
) -> None:
    doc = {"apiVersion": "conveyor.dev/v1", "kind": "Deployment", "metadata": {"name": "tiny"}}
    check(client.post("/api/v1/apply", json={"documents": [{**doc, "spec": {"model": "tiny@prod"}}]}))
    path = f"/api/v1/deployments/{quote(name, safe='')}"
    post(client, f"{path}/scale", scale, raw)
    post(client, f"{path}/rollback", rollback, raw)
    check(client.get(path))
