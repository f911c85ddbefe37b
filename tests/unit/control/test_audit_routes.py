"""``/api/v1/audit`` over a real SQLite registry: the log as JSON, since/limit, verify, and the guard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from sqlalchemy import text

from conveyor.control.audit_routes import audit_routes
from conveyor.registry import LocalArtifactStore, Registry

SIG: dict[str, Any] = {"inputs": [], "outputs": []}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t") as reg:
        reg.register("tiny", b"v1", signature=SIG, framework="onnx", aliases=["prod"])
        reg.register("tiny", b"v2", signature=SIG, framework="onnx")
        reg.set_alias("tiny", 2, "prod", user="ops")
        yield reg


def client_for(registry: Registry, guard: Any = None) -> TestClient:
    app = FastAPI()
    app.include_router(audit_routes(registry, guard), prefix="/api/v1")
    return TestClient(app)


def test_audit_returns_the_records_oldest_first(registry: Registry) -> None:
    records = client_for(registry).get("/api/v1/audit").json()["records"]
    assert [(r["seq"], r["action"], r["object"], r["actor"]) for r in records] == [
        (1, "model.register", "tiny:1", "t"),
        (2, "model.register", "tiny:2", "t"),
        (3, "alias.set", "tiny@prod", "ops"),
    ]
    assert records[2]["details"] == {"version": 2, "previous_version": 1}
    assert records[2]["prev_hash"] == records[1]["hash"]


def test_audit_since_and_limit(registry: Registry) -> None:
    c = client_for(registry)
    assert [r["seq"] for r in c.get("/api/v1/audit", params={"limit": 2}).json()["records"]] == [2, 3]
    third = registry.audit.list()[2].time
    naive_utc = third.replace(tzinfo=None).isoformat()
    assert [r["seq"] for r in c.get("/api/v1/audit", params={"since": naive_utc}).json()["records"]] == [3]
    assert c.get("/api/v1/audit", params={"limit": 0}).status_code == 422


def test_audit_verify_reports_an_intact_chain_then_the_edited_record(registry: Registry) -> None:
    c = client_for(registry)
    intact = c.get("/api/v1/audit/verify").json()
    assert intact["intact"] is True and intact["records"] == 3 and intact["head_seq"] == 3
    assert intact["head_hash"] == registry.audit.list()[-1].hash and intact["problem"] is None
    with registry.database.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))
    broken = c.get("/api/v1/audit/verify").json()
    assert broken["intact"] is False
    assert broken["problem"]["seq"] == 2 and broken["problem"]["kind"] == "edited"


def test_the_guard_runs_before_every_audit_route(registry: Registry) -> None:
    def refuse() -> None:
        raise HTTPException(403, "not an admin")

    c = client_for(registry, Depends(refuse))
    assert c.get("/api/v1/audit").status_code == 403
    assert c.get("/api/v1/audit/verify").status_code == 403
