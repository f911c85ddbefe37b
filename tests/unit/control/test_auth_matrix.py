"""Every management route × every kind of caller gives exactly the expected 401 / 403 / 2xx.

The routes come from the API's own OpenAPI document and must all be in ``ROUTES``: a new route cannot skip
the matrix. A real SQLite registry, the API in-process (the stand-in runtime), real tokens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conveyor.control.management import create_api
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.registry.records import RolloutInfo
from conveyor.security.tokens import ROLE_ACTIONS
from conveyor.settings import Settings
from tests.fixtures.control_runtime import FakeRuntime

SIG: dict[str, Any] = {"inputs": [], "outputs": []}
OPEN = "open"
# (method, path) -> the action its role must allow (security/tokens.py ROLE_ACTIONS), or OPEN.
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/health"): OPEN,
    ("GET", "/api/v1/models"): "read",
    ("GET", "/api/v1/models/{name}"): "read",
    ("POST", "/api/v1/apply"): "deploy",
    ("POST", "/api/v1/diff"): "read",
    ("GET", "/api/v1/deployments"): "read",
    ("GET", "/api/v1/deployments/{name}"): "read",
    ("DELETE", "/api/v1/deployments/{name}"): "deploy",
    ("POST", "/api/v1/deployments/{name}/scale"): "deploy",
    ("POST", "/api/v1/deployments/{name}/rollback"): "deploy",
    ("GET", "/api/v1/deployments/{name}/revisions"): "read",
    ("GET", "/api/v1/deployments/{name}/events"): "read",
    ("GET", "/api/v1/deployments/{name}/drift"): "read",
    ("GET", "/api/v1/deployments/{name}/series"): "read",
    ("GET", "/api/v1/deployments/{name}/rollout"): "read",
    ("GET", "/api/v1/deployments/{name}/rollouts"): "read",
    ("POST", "/api/v1/deployments/{name}/rollout"): "deploy",
    ("POST", "/api/v1/deployments/{name}/rollout/{action}"): "deploy",
    ("GET", "/api/v1/replicas"): "read",
    ("GET", "/api/v1/endpoints"): "read",
    ("GET", "/api/v1/routing"): "route",
    ("GET", "/api/v1/routing/watch"): "route",
    ("POST", "/api/v1/gateways/report"): "route",
    ("GET", "/api/v1/tokens"): "admin",
    ("POST", "/api/v1/tokens"): "admin",
    ("DELETE", "/api/v1/tokens/{name}"): "admin",
    ("GET", "/api/v1/audit"): "admin",
    ("GET", "/api/v1/audit/verify"): "admin",
    ("GET", "/api/v1/alerts"): "read",
    ("GET", "/api/v1/alerts/rules"): "read",
    ("DELETE", "/api/v1/alertrules/{name}"): "deploy",
    ("GET", "/api/v1/export/prometheus/{name}"): "read",
    ("GET", "/api/v1/export/grafana"): "read",
    ("GET", "/api/v1/edges"): "read",
    ("PUT", "/api/v1/edges/{name}"): "edge",
    ("DELETE", "/api/v1/edges/{name}"): "deploy",
    ("POST", "/api/v1/edges/{name}/heartbeat"): "edge",
    ("GET", "/api/v1/edges/{name}/desired"): "edge",
    ("GET", "/api/v1/artifacts/{model}/{version}"): "edge",
}
UNAUTHENTICATED = ["none", "basic", "malformed", "unknown", "wrong-secret", "expired", "revoked"]
ROLES = sorted(ROLE_ACTIONS)


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "tiny"},
        "spec": {"model": "tiny:1", "replicas": replicas},
    }


class Api:
    def __init__(self, tmp_path: Path) -> None:
        self.registry = Registry(
            f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t"
        )
        self.registry.register("tiny", b"v1", signature=SIG, framework="onnx")
        self.registry.register("tiny", b"v2", signature=SIG, framework="onnx")  # a rollout's candidate
        # Made before the API starts: it reads the tokens when it starts and then refreshes them
        # periodically, so a token made afterwards could be unknown for the first requests.
        self.tokens = {role: self.registry.tokens.create(f"as-{role}", role)[0] for role in ROLES}
        app = create_api(self.registry, FakeRuntime(self.registry), Settings(home=tmp_path))
        app.state.rollouts = FakeRollouts(self.registry)
        self.client = TestClient(app)
        self.client.__enter__()
        self.admin = {"authorization": f"Bearer {self.tokens['admin']}"}
        self.headers = self._unauthenticated()
        self.serial = 0
        for replicas in (1, 2):  # two revisions: rollback has one to go back to
            self.client.post("/api/v1/apply", json={"documents": [deployment(replicas)]}, headers=self.admin)

    def _unauthenticated(self) -> dict[str, dict[str, str]]:
        tokens = self.registry.tokens
        expired, _ = tokens.create("expired", "admin", expires_in_s=0.05)
        revoked, _ = tokens.create("revoked", "admin")
        tokens.revoke("revoked")
        admin = self.tokens["admin"]
        token_id = admin.split("_")[1]
        time.sleep(0.1)  # "expired" is
        return {
            "none": {},
            "basic": {"authorization": "Basic YWRtaW46YWRtaW4="},
            "malformed": {"authorization": "Bearer not-a-conveyor-token"},
            "unknown": {"authorization": "Bearer cvy_0123456789abcdef_" + "A" * 43},
            "wrong-secret": {"authorization": f"Bearer cvy_{token_id}_" + "B" * 43},
            "expired": {"authorization": f"Bearer {expired}"},
            "revoked": {"authorization": f"Bearer {revoked}"},
        }

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.registry.close()

    def call(self, method: str, path: str, headers: dict[str, str]) -> int:
        """A request that succeeds when allowed: what a destructive route removes is made again first."""
        self.serial += 1
        if "/deployments/{name}" in path:  # whatever ran before (a delete, another worker's order)
            for replicas in (1, 2):  # two revisions: rollback has one to go back to
                self.client.post(
                    "/api/v1/apply", json={"documents": [deployment(replicas)]}, headers=self.admin
                )
        if ("/rollout" in path and method == "GET") or path.endswith("/{action}"):
            start = {"to": "tiny:2"}  # a rollout to read or act on (the re-apply above ended the last one)
            self.client.post("/api/v1/deployments/tiny/rollout", json=start, headers=self.admin)
        if path == "/api/v1/alertrules/{name}":
            rule = {"metadata": {"name": "tiny"}, "spec": {"expr": "drift_psi", "threshold": 1.0}}
            self.registry.alerts.apply_rules([(rule, f"fp-{self.serial}")], by="t")
        if path == "/api/v1/tokens/{name}":
            self.registry.tokens.create(f"victim-{self.serial}", "viewer")
        url = path.replace("{name}", f"victim-{self.serial}" if "/tokens/" in path else "tiny")
        url = url.replace("{action}", "pause")
        if path.startswith("/api/v1/edges/{name}"):  # an edge node named tiny following tiny
            self.registry.edges.register("tiny", "tiny", {})
        url = url.replace("{model}", "tiny").replace("{version}", "1")
        bodies: dict[str, dict[str, Any]] = {
            "/api/v1/apply": {"documents": [deployment(3)]},
            "/api/v1/diff": {"documents": [deployment(3)]},
            "/api/v1/deployments/{name}/scale": {"replicas": 1},
            "/api/v1/deployments/{name}/rollback": {},
            "/api/v1/deployments/{name}/rollout": {"to": "tiny:2"},
            "/api/v1/gateways/report": {"gateway": "gw-1", "generation": 0, "routes": []},
            "/api/v1/tokens": {"name": f"new-{self.serial}", "role": "viewer"},
            "/api/v1/edges/{name}": {"deployment": "tiny"},
            "/api/v1/edges/{name}/heartbeat": {"version": "1", "health": "serving"},
        }
        body = bodies.get(path)
        if path.endswith("/watch"):
            with self.client.stream(method, url, headers=headers) as r:
                if r.status_code == 200:
                    next(r.iter_lines())  # the current table comes at once
                return int(r.status_code)
        return int(self.client.request(method, url, json=body, headers=headers).status_code)


class FakeRollouts:
    """The rollout controller's part the API calls: no rollout runs, a command answers the stored one."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def live(self, deployment: str) -> None:
        return None

    async def command(self, deployment: str, action: str, actor: str) -> RolloutInfo:
        return self.registry.rollouts.get(deployment)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    a = Api(tmp_path_factory.mktemp("matrix"))
    try:
        yield a
    finally:
        a.close()


def test_every_route_of_the_openapi_document_is_in_the_matrix(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    found = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert found == set(ROUTES), "add the new route to ROUTES with the action its role needs"
    # and the document tells clients how to authenticate (the /docs "Authorize" button)
    assert any(s.get("scheme") == "bearer" for s in doc["components"]["securitySchemes"].values())


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_a_caller_without_a_valid_token_gets_401_on_every_guarded_route(
    api: Api, route: tuple[str, str]
) -> None:
    method, path = route
    got = {kind: api.call(method, path, headers) for kind, headers in api.headers.items()}
    if ROUTES[route] == OPEN:
        assert set(got.values()) == {200}, got
    else:
        assert got == dict.fromkeys(UNAUTHENTICATED, 401)


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_each_role_gets_2xx_where_it_may_and_403_where_it_may_not(api: Api, route: tuple[str, str]) -> None:
    method, path = route
    action = ROUTES[route]
    got = {role: api.call(method, path, {"authorization": f"Bearer {api.tokens[role]}"}) for role in ROLES}
    expected = {role: 200 if action == OPEN or action in ROLE_ACTIONS[role] else 403 for role in ROLES}
    assert got == expected


def test_a_401_says_why_and_how_and_is_recorded_in_the_audit_log(api: Api) -> None:
    r = api.client.get("/api/v1/deployments", headers=api.headers["revoked"])
    assert r.status_code == 401
    assert r.json() == {"error": "token 'revoked' was revoked"}
    assert r.headers["www-authenticate"] == 'Bearer realm="conveyor"'
    r = api.client.get("/api/v1/deployments", headers={"authorization": f"Bearer {api.tokens['predictor']}"})
    assert r.status_code == 403
    assert r.json() == {"error": "token 'as-predictor' (role predictor) may not read the management API"}
    refused = [e for e in api.registry.audit.list(None, 10_000) if e.action == "auth.refused"]
    assert refused and all(e.actor.startswith("client:") for e in refused)
    assert any("revoked" in str(e.details.get("reason")) for e in refused)


def test_changes_made_with_a_token_are_recorded_under_its_name(api: Api) -> None:
    headers = {"authorization": f"Bearer {api.tokens['deployer']}"}
    r = api.client.post("/api/v1/deployments/tiny/scale", json={"replicas": 3}, headers=headers)
    assert r.status_code == 200, r.text
    last = api.registry.audit.list(None, 1)[-1]
    assert (last.actor, last.action, last.object) == ("token:as-deployer", "deployment.scale", "tiny")
