"""Deployment revisions from real processes; migrations 0002 and 0003 over older databases (SQLite, PG)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from conveyor.registry import LocalArtifactStore, Registry
from conveyor.registry.db import MIGRATIONS_DIR, Database
from conveyor.registry.orm import Model, ModelVersion, utcnow
from conveyor.spec import Deployment
from tests.fixtures.racing import race

WORKERS = 4
PER_WORKER = 5
SIG: dict[str, Any] = {"inputs": [], "outputs": []}


def _spec(replicas: int) -> tuple[dict[str, Any], str]:
    d = Deployment.model_validate(
        {"metadata": {"name": "racy"}, "spec": {"model": "m:1", "replicas": replicas}}
    )
    return d.to_dict(), d.fingerprint()


def _apply_many(url: str, root: str, worker: int, start: Any, results: Any) -> None:
    start.wait(timeout=60)  # every worker opens the fresh database (and migrates it) at once
    out: list[tuple[int, bool, str]] = []
    with Registry(url, LocalArtifactStore(Path(root))) as registry:
        for i in range(PER_WORKER):
            body, fp = _spec(100 * worker + i + 1)  # distinct specs: every apply is a change
            r = registry.deployments.apply(body, fp, created_by=f"w{worker}")
            out.append((r.revision, r.changed, fp))
    results.put(out)


def test_concurrent_applies_get_distinct_revisions_and_lose_nothing(fresh_url: str, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    claimed: dict[int, str] = {}
    for batch in race(_apply_many, (fresh_url, str(root)), WORKERS):
        for revision, changed, fp in batch:
            assert changed
            assert revision not in claimed, f"revision {revision} handed out twice"
            claimed[revision] = fp

    total = WORKERS * PER_WORKER
    assert sorted(claimed) == list(range(1, total + 1))
    with Registry(fresh_url, LocalArtifactStore(root)) as registry:
        history = registry.deployments.history("racy")
        assert [(r.revision, r.fingerprint) for r in history] == sorted(claimed.items())
        assert registry.deployments.get("racy").revision == total
        assert registry.deployments.apply(*_spec(999)).revision == total + 1


def _database_at(url: str, revision: str) -> Database:
    """The database at ``url`` migrated only up to ``revision``, as an older Conveyor left it."""
    db = Database(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return db


def test_migration_0002_upgrades_a_0001_registry_in_place(fresh_url: str, tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    sha256, size = store.put_bytes(b"model from the 0001 days")
    db = _database_at(fresh_url, "0001")
    try:
        assert "deployments" not in inspect(db.engine).get_table_names()
        with Session(db.engine) as s, s.begin():
            model = Model(name="iris", last_version=1, created_at=utcnow(), created_by="old")
            s.add(model)
            s.flush()
            s.add(
                ModelVersion(
                    model_id=model.id,
                    version=1,
                    sha256=sha256,
                    size_bytes=size,
                    framework="onnx",
                    signature=SIG,
                    tags={"stage": "old"},
                    created_at=utcnow(),
                    meta={},
                )
            )
    finally:
        db.dispose()

    with Registry(fresh_url, store) as registry:
        (v1,) = registry.list_versions("iris")
        assert (v1.version, v1.tags, v1.created_by) == (1, {"stage": "old"}, None)
        assert registry.artifact_bytes(v1) == b"model from the 0001 days"
        assert registry.register("iris", b"new", signature=SIG, framework="onnx").version == 2
        assert registry.deployments.apply(*_spec(2)).revision == 1
    db = Database(fresh_url)
    try:
        with db.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        # upgraded through 0002 to the newest migration, whichever that is now
        newest = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        assert newest is not None and version == newest >= "0002"
    finally:
        db.dispose()


def test_migration_0003_keeps_old_revisions_with_no_resolved_model(fresh_url: str, tmp_path: Path) -> None:
    db = _database_at(fresh_url, "0002")
    try:
        columns = {c["name"] for c in inspect(db.engine).get_columns("deployment_revisions")}
        assert "model" not in columns
        body, fp = _spec(2)
        with db.engine.begin() as conn:
            now = utcnow()
            conn.execute(
                text(
                    "INSERT INTO deployments (name, current_revision, created_at, updated_at) "
                    "VALUES ('racy', 1, :now, :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO deployment_revisions (deployment_id, revision, spec, fingerprint, "
                    "created_at, change_cause) SELECT id, 1, :spec, :fp, :now, 'apply' FROM deployments"
                ),
                {"spec": json.dumps(body), "fp": fp, "now": now},
            )
    finally:
        db.dispose()

    with Registry(fresh_url, LocalArtifactStore(tmp_path / "artifacts")) as registry:
        deps = registry.deployments
        assert (deps.get("racy").spec, deps.get("racy").model) == (body, None)
        # Applying the same spec now that the model is resolved records it as a new revision.
        result = deps.apply(body, fp, model="m:1")
        assert (result.revision, result.changed) == (2, True)
        assert [r.model for r in deps.history("racy")] == [None, "m:1"]
        assert deps.rollback("racy").changed is True
        assert deps.get("racy").model is None
