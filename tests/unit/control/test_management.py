"""The management API over a real SQLite registry and a stand-in runtime: every route, every error shape."""

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


def doc(name: str = "tiny", model: str = "tiny@prod", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"model": model, **spec},
    }


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t") as reg:
        reg.register("tiny", b"v1", signature=SIG, framework="onnx", aliases=["prod"])
        reg.register("tiny", b"v2", signature=SIG, framework="onnx")
        yield reg


@pytest.fixture
def runtime(registry: Registry) -> FakeRuntime:
    return FakeRuntime(registry)


@pytest.fixture
def client(registry: Registry, runtime: FakeRuntime, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path, user="os-user")
    token, _ = registry.tokens.create("api-user", "admin")
    with TestClient(
        create_api(registry, runtime, settings), headers={"authorization": f"Bearer {token}"}
    ) as c:
        yield c


def apply(client: TestClient, *docs: dict[str, Any], dry_run: bool = False) -> Any:
    r = client.post("/api/v1/apply", json={"documents": list(docs), "dryRun": dry_run})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_health_names_version_and_epoch(client: TestClient) -> None:
    assert client.get("/api/v1/health").json() == {"status": "ok", "version": "0.1.0", "epoch": "feedbeef"}


def test_apply_resolves_the_alias_and_a_second_apply_is_unchanged(
    client: TestClient, runtime: FakeRuntime
) -> None:
    first = apply(client, doc(replicas=2))
    assert first == [
        {"kind": "Deployment", "name": "tiny", "revision": 1, "changed": True, "model": "tiny:1"}
    ]
    assert apply(client, doc(replicas=2))[0] == {**first[0], "changed": False}
    assert runtime.changes == ["tiny"]  # only a change wakes the reconciler
    status = client.get("/api/v1/deployments/tiny").json()
    assert (status["model"], status["created_by"], status["endpoint"]) == (
        "tiny:1",
        "token:api-user",
        "/v2/models/tiny",
    )
    assert status["replicas"] == {"desired": 2, "ready": 2, "total": 2}
    assert status["spec"]["spec"]["replicas"] == 2 and len(status["fingerprint"]) == 64


def test_a_moved_alias_makes_a_new_revision_on_the_next_apply(client: TestClient, registry: Registry) -> None:
    apply(client, doc())
    registry.set_alias("tiny", 2, "prod")
    assert apply(client, doc())[0] | {"kind": None} == {
        "kind": None,
        "name": "tiny",
        "revision": 2,
        "changed": True,
        "model": "tiny:2",
    }


def test_dry_run_reports_what_would_change_and_stores_nothing(
    client: TestClient, runtime: FakeRuntime
) -> None:
    assert apply(client, doc(), dry_run=True)[0]["revision"] == 1
    assert client.get("/api/v1/deployments/tiny").status_code == 404
    apply(client, doc())
    assert apply(client, doc(), dry_run=True)[0] | {"model": None} == {
        "kind": "Deployment",
        "name": "tiny",
        "revision": 1,
        "changed": False,
        "model": None,
    }
    assert apply(client, doc(replicas=3), dry_run=True)[0]["revision"] == 2
    assert runtime.changes == ["tiny"]


def test_every_invalid_document_is_reported_and_none_is_applied(client: TestClient) -> None:
    bad = doc(name="Bad_Name", replicas=-1)
    r = client.post("/api/v1/apply", json={"documents": [doc(name="ok"), bad, {"kind": "Secret"}]})
    assert r.status_code == 400
    lines = r.json()["error"].splitlines()
    assert lines[0].startswith("documents[1].metadata.name: invalid name 'Bad_Name'")
    assert lines[1] == "documents[1].spec.replicas: Input should be greater than or equal to 0"
    assert lines[2] == "documents[2].kind: unsupported 'Secret'; supported: AlertRule, Deployment"
    assert client.get("/api/v1/deployments").json() == {"deployments": []}


def test_a_target_this_control_plane_cannot_run_is_refused(client: TestClient) -> None:
    r = client.post("/api/v1/apply", json={"documents": [doc(target="ray")]})
    assert r.status_code == 400
    assert r.json()["error"].startswith(  # this control plane has no CONVEYOR_RAY_ADDRESS
        "documents[0].spec.target: the ray target needs a Ray cluster: set CONVEYOR_RAY_ADDRESS"
    )


def test_replica_counts_are_bounded(client: TestClient) -> None:
    """A typo (replicas: 100000000000000000000000) is refused, not carried out until the machine runs out."""
    r = client.post("/api/v1/apply", json={"documents": [doc(replicas=10**23)]})
    assert r.status_code == 400
    assert r.json()["error"] == "documents[0].spec.replicas: Input should be less than or equal to 1000"
    r = client.post("/api/v1/apply", json={"documents": [doc(replicas=65)]})
    assert r.status_code == 400
    assert r.json()["error"].startswith("documents[0].spec.replicas: 65 replicas; the local target")
    auto = doc(autoscaling={"minReplicas": 1, "maxReplicas": 100})
    r = client.post("/api/v1/apply", json={"documents": [auto], "dryRun": True})
    assert r.status_code == 400 and "spec.autoscaling.maxReplicas: 100 replicas" in r.json()["error"]
    big_batch = doc(batching={"maxBatchSize": 10**30})
    assert client.post("/api/v1/apply", json={"documents": [big_batch]}).status_code == 400
    apply(client, doc(replicas=64))
    r = client.post("/api/v1/deployments/tiny/scale", json={"replicas": 65})
    assert r.status_code == 400 and r.json()["error"].startswith("replicas: 65; the local target")
    r = client.post("/api/v1/deployments/tiny/scale", json={"replicas": 10**9})
    assert (r.status_code, r.json()["error"]) == (400, "replicas: Input should be less than or equal to 1000")


def test_a_canary_traffic_strategy_is_refused_pointing_to_spec_rollout(client: TestClient) -> None:
    r = client.post("/api/v1/apply", json={"documents": [doc(traffic={"strategy": "canary"})]})
    assert r.status_code == 400
    assert r.json()["error"] == (
        "documents[0].spec.traffic.strategy: canary is a rollout strategy: write it as "
        "spec.rollout.strategy: canary (spec.traffic.strategy takes only replace)"
    )


def test_a_deployment_that_cannot_run_says_why(client: TestClient, runtime: FakeRuntime) -> None:
    apply(client, doc())
    assert client.get("/api/v1/deployments").json()["deployments"][0]["problem"] is None
    runtime.problems["tiny"] = "artifact digest mismatch"
    assert client.get("/api/v1/deployments/tiny").json()["problem"] == "artifact digest mismatch"


def test_an_unknown_model_or_alias_is_404_naming_it(client: TestClient) -> None:
    r = client.post("/api/v1/apply", json={"documents": [doc(name="a"), doc(name="b", model="nosuch:1")]})
    assert r.status_code == 404
    assert r.json() == {"error": "deployment 'b': model 'nosuch' not found"}
    r = client.post("/api/v1/apply", json={"documents": [doc(model="tiny@nope")]})
    assert (r.status_code, r.json()["error"]) == (404, "deployment 'tiny': alias tiny@nope not found")
    r = client.post("/api/v1/apply", json={"documents": [doc(model="tiny:9")]})
    assert r.status_code == 404 and "tiny:9" in r.json()["error"]
    assert client.get("/api/v1/deployments").json() == {"deployments": []}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "documents: required field missing"),
        ({"documents": []}, "documents: List should have at least 1 item after validation, not 0"),
        ({"documents": [doc()], "dry_run": True}, "dry_run: unknown field"),
        ({"documents": "x"}, "documents: Input should be a valid list"),
        ({"documents": [doc()], "dryRun": "yes"}, "dryRun: Input should be a valid boolean"),
    ],
)
def test_a_malformed_body_is_400_with_the_field_path(client: TestClient, body: Any, error: str) -> None:
    r = client.post("/api/v1/apply", json=body)
    assert (r.status_code, r.json()) == (400, {"error": error})


def test_a_body_that_is_not_json_is_400(client: TestClient) -> None:
    r = client.post("/api/v1/apply", content=b"{nope", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (
        400,
        {"error": "body: invalid JSON (Expecting property name enclosed in double quotes)"},
    )
    r = client.post("/api/v1/deployments/tiny/scale", content=b"")
    assert (r.status_code, r.json()) == (400, {"error": "body: required field missing"})


def test_unknown_paths_and_methods_answer_json(client: TestClient) -> None:
    r = client.get("/api/v1/nope")
    assert (r.status_code, r.json()) == (404, {"error": "no such path: GET /api/v1/nope (see /docs)"})
    r = client.put("/api/v1/health")
    assert (r.status_code, r.json()) == (405, {"error": "method PUT is not allowed on /api/v1/health"})
    assert client.get("/api/v1/deployments/nope").json() == {"error": "deployment 'nope' not found"}


def test_scale_makes_a_revision_with_the_same_model(
    client: TestClient, registry: Registry, runtime: FakeRuntime
) -> None:
    apply(client, doc())
    registry.set_alias("tiny", 2, "prod")  # scaling does not pick up the moved alias
    r = client.post("/api/v1/deployments/tiny/scale", json={"replicas": 3})
    assert r.json() == {"name": "tiny", "revision": 2, "changed": True}
    history = client.get("/api/v1/deployments/tiny/revisions").json()["revisions"]
    assert [(h["change_cause"], h["model"], h["spec"]["spec"]["replicas"]) for h in history] == [
        ("apply", "tiny:1", 1),
        ("scale to 3", "tiny:1", 3),
    ]
    assert client.post("/api/v1/deployments/tiny/scale", json={"replicas": 3}).json()["changed"] is False
    assert runtime.replica_counts("tiny") == {"desired": 3, "ready": 3, "total": 3}
    assert client.post("/api/v1/deployments/tiny/scale", json={"replicas": 0}).json()["revision"] == 3


def test_scale_refuses_negative_counts_and_autoscaled_deployments(client: TestClient) -> None:
    apply(client, doc(), doc(name="auto", autoscaling={"minReplicas": 1, "maxReplicas": 4}))
    r = client.post("/api/v1/deployments/tiny/scale", json={"replicas": -1})
    assert (r.status_code, r.json()["error"]) == (400, "replicas: Input should be greater than or equal to 0")
    r = client.post("/api/v1/deployments/auto/scale", json={"replicas": 2})
    assert r.status_code == 409
    assert r.json()["error"].startswith("deployment 'auto' is autoscaled (1..4 replicas)")
    assert client.post("/api/v1/deployments/nope/scale", json={"replicas": 2}).status_code == 404


def test_rollback_returns_to_the_model_that_revision_ran(client: TestClient, registry: Registry) -> None:
    apply(client, doc())
    registry.set_alias("tiny", 2, "prod")
    apply(client, doc())
    r = client.post("/api/v1/deployments/tiny/rollback")
    # tiny@prod names tiny:2 now: a later apply of that spec rolls forward again, and the answer says so
    next_apply = {"ref": "tiny@prod", "model": "tiny:2"}
    assert r.json() == {
        "name": "tiny",
        "revision": 3,
        "changed": True,
        "model": "tiny:1",
        "next_apply": next_apply,
    }
    assert client.get("/api/v1/deployments/tiny").json()["model"] == "tiny:1"
    r = client.post("/api/v1/deployments/tiny/rollback", json={"toRevision": 2})
    assert r.json() == {"name": "tiny", "revision": 4, "changed": True, "model": "tiny:2", "next_apply": None}
    r = client.post("/api/v1/deployments/tiny/rollback", json={"toRevision": 9})
    assert (r.status_code, r.json()) == (404, {"error": "revision 9 of deployment 'tiny' not found"})
    r = client.post("/api/v1/deployments/tiny/rollback", json={"toRevision": 0})
    assert r.status_code == 400 and r.json()["error"].startswith("toRevision: ")


def test_describe_adds_revisions_replicas_and_recent_events(client: TestClient, registry: Registry) -> None:
    apply(client, doc(replicas=2))
    for i in range(25):
        registry.deployments.record_event("tiny", "Tick", f"event {i}")
    d = client.get("/api/v1/deployments/tiny").json()
    assert [r["revision"] for r in d["revisions"]] == [1]
    assert [(r["id"], r["state"]) for r in d["instances"]] == [("tiny-1-1", "ready"), ("tiny-1-2", "ready")]
    assert len(d["events"]) == 20 and d["events"][-1]["message"] == "event 24"
    events = client.get("/api/v1/deployments/tiny/events", params={"limit": 2}).json()["events"]
    assert [e["message"] for e in events] == ["event 23", "event 24"]
    r = client.get("/api/v1/deployments/tiny/events", params={"limit": "x"})
    assert r.status_code == 400 and r.json()["error"].startswith("limit: ")


def test_delete_removes_it_and_tells_the_runtime(client: TestClient, runtime: FakeRuntime) -> None:
    apply(client, doc())
    assert client.delete("/api/v1/deployments/tiny").json() == {"name": "tiny", "deleted": True}
    assert runtime.changes == ["tiny", "tiny"] and runtime.replicas() == []
    assert client.delete("/api/v1/deployments/tiny").status_code == 404


def test_models_list_and_detail(client: TestClient) -> None:
    models = client.get("/api/v1/models").json()["models"]
    assert [(m["name"], m["latest_version"], m["aliases"]) for m in models] == [("tiny", 2, {"prod": 1})]
    detail = client.get("/api/v1/models/tiny").json()
    assert detail["model"]["name"] == "tiny" and [v["version"] for v in detail["versions"]] == [1, 2]
    assert client.get("/api/v1/models/nope").status_code == 404


def test_replicas_endpoints_and_routing_come_from_the_runtime(
    client: TestClient, runtime: FakeRuntime
) -> None:
    apply(client, doc(), doc(name="other", model="tiny:2", replicas=0))
    assert [r["id"] for r in client.get("/api/v1/replicas").json()["replicas"]] == ["tiny-1-1"]
    ends = client.get("/api/v1/endpoints").json()
    assert ends["gateways"] == [] and [e["url"] for e in ends["endpoints"]] == [None, None]
    runtime.gateway_list = [{"id": "gw", "url": "http://127.0.0.1:8080/", "grpcUrl": None}]
    ends = client.get("/api/v1/endpoints").json()
    assert ends["endpoints"][1] == {
        "name": "tiny",
        "model": "tiny:1",
        "url": "http://127.0.0.1:8080/v2/models/tiny",
        "replicas": {"desired": 1, "ready": 1, "total": 1},
        "instances": [
            {"id": "tiny-1-1", "version": "1", "state": "ready", "address": "unix:/tmp/tiny-1.sock"}
        ],
    }
    assert client.get("/api/v1/routing").json() == runtime.table


def test_gateway_reports_are_validated_then_handed_over(client: TestClient, runtime: FakeRuntime) -> None:
    report = {
        "gateway": "gw-1",
        "url": "http://127.0.0.1:8080",
        "grpcUrl": None,
        "epoch": "feedbeef",
        "generation": 7,
        "routes": [
            {
                "name": "tiny",
                "version": "2",
                "inFlight": 3,
                "held": 0,
                "replicas": [{"address": "unix:/x.sock", "admitted": True, "inFlight": 3}],
            }
        ],
    }
    assert client.post("/api/v1/gateways/report", json=report).json() == {"ok": True}
    assert runtime.reports == [report]
    bad = {**report, "routes": [{"name": "tiny", "version": "2", "inFlight": -1}]}
    r = client.post("/api/v1/gateways/report", json=bad)
    assert (r.status_code, r.json()) == (
        400,
        {"error": "routes[0].inFlight: Input should be greater than or equal to 0"},
    )
    assert len(runtime.reports) == 1


def test_openapi_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "Conveyor management API"
    assert "/api/v1/deployments/{name}/scale" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_numbers_beyond_the_registry_are_400s_not_500s(client: TestClient) -> None:
    r = client.post("/api/v1/apply", json={"documents": [doc(model="tiny:99999999999999999999999")]})
    assert r.status_code == 400 and "the version is above" in r.json()["error"]
    apply(client, doc())
    r = client.post("/api/v1/deployments/tiny/rollback", json={"toRevision": 2**63})
    assert r.status_code == 400 and r.json()["error"].startswith("toRevision:")
    r = client.get("/api/v1/deployments/tiny/events", params={"limit": 10**23})
    assert r.status_code == 400 and r.json()["error"].startswith("limit:")


def test_diff_resolves_the_model_as_apply_does_so_an_alias_move_is_a_change(
    client: TestClient, registry: Registry
) -> None:
    new = client.post("/api/v1/diff", json={"documents": [doc()]}).json()
    assert new["differs"] is True
    assert new["deployments"][0] | {"digest": None} == {
        "kind": "Deployment",
        "name": "tiny",
        "exists": False,
        "revision": None,
        "next_revision": 1,
        "changed": True,
        "spec_changed": True,
        "model_changed": True,
        "live_spec": None,
        "ref": "tiny@prod",
        "live_ref": None,
        "model": "tiny:1",
        "live_model": None,
        "digest": None,
        "live_digest": None,
    }
    apply(client, doc())
    same = client.post("/api/v1/diff", json={"documents": [doc()]}).json()
    assert same["differs"] is False and same["deployments"][0]["next_revision"] is None
    registry.set_alias("tiny", 2, "prod")
    moved = client.post("/api/v1/diff", json={"documents": [doc()]}).json()["deployments"][0]
    assert (moved["changed"], moved["spec_changed"], moved["model_changed"]) == (True, False, True)
    assert (moved["live_model"], moved["model"], moved["next_revision"]) == ("tiny:1", "tiny:2", 2)
    assert moved["live_digest"] == registry.resolve("tiny:1").sha256
    assert moved["digest"] == registry.resolve("tiny:2").sha256
    assert apply(client, doc())[0]["revision"] == 2  # what diff announced
    r = client.post("/api/v1/diff", json={"documents": [doc(model="nosuch:1")]})
    assert (r.status_code, r.json()) == (404, {"error": "deployment 'tiny': model 'nosuch' not found"})
