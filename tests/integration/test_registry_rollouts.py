"""RolloutStore on SQLite and PostgreSQL: one active rollout per deployment, guarded updates, ordered events,
audit records in the same transaction, cascade on delete; migration 0006 over a populated 0005 database."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry import LocalArtifactStore, Registry, RolloutInfo
from conveyor.registry.db import MIGRATIONS_DIR, Database
from conveyor.registry.orm import RolloutRow, utcnow
from conveyor.spec import Deployment
from tests.integration.test_registry_deployments import _database_at

SPEC: dict[str, Any] = {"strategy": "canary", "steps": [10.0, 50.0, 100.0], "interval": "30s"}


@pytest.fixture
def registry(fresh_url: str, tmp_path: Path) -> Iterator[Registry]:
    """An empty registry on SQLite, and (marked postgres) on the suite's PostgreSQL."""
    with Registry(fresh_url, LocalArtifactStore(tmp_path / "artifacts"), user="it") as reg:
        yield reg


def deployment(name: str, model: str) -> tuple[dict[str, Any], str]:
    d = Deployment.model_validate({"metadata": {"name": name}, "spec": {"model": model}})
    return d.to_dict(), d.fingerprint()


def two_revisions(registry: Registry, name: str = "web") -> None:
    for version in (1, 2):
        registry.deployments.apply(*deployment(name, f"iris:{version}"), model=f"iris:{version}")


def start(registry: Registry, name: str = "web", **overrides: Any) -> RolloutInfo:
    fields: dict[str, Any] = {
        "stable_revision": 1,
        "candidate_revision": 2,
        "stable_model": "iris:1",
        "candidate_model": "iris:2",
        "strategy": "canary",
        "spec": SPEC,
        "weight": 10.0,
        "started_by": "alice",
    }
    return registry.rollouts.start(name, **{**fields, **overrides})


def test_a_started_rollout_is_active_and_reads_back_field_by_field(registry: Registry) -> None:
    two_revisions(registry)
    r = start(registry)
    assert (r.deployment, r.number, r.strategy, r.phase, r.active) == (
        "web",
        1,
        "canary",
        "progressing",
        True,
    )
    assert (r.stable_revision, r.candidate_revision, r.stable_model, r.candidate_model) == (
        1,
        2,
        "iris:1",
        "iris:2",
    )
    assert (r.step, r.weight, r.failed_checks, r.passed_checks, r.forced) == (0, 10.0, 0, 0, False)
    assert (r.spec, r.started_by, r.reason, r.finished_at) == (SPEC, "alice", None, None)
    assert r.started_at == r.step_started_at == r.updated_at and r.started_at.tzinfo is not None
    assert (
        registry.rollouts.active("web")
        == r
        == registry.rollouts.get("web")
        == registry.rollouts.get("web", 1)
    )
    assert registry.rollouts.active_all() == [r]
    d = r.to_dict()
    assert (d["deployment"], d["candidateRevision"], d["failedChecks"], d["active"]) == ("web", 2, 0, True)
    assert d["startedAt"] == r.started_at.isoformat() and d["finishedAt"] is None
    assert json.loads(json.dumps(d)) == d
    [event] = registry.rollouts.events(r.id)
    assert (event.kind, event.message, event.data) == (
        "Started",
        "canary: revision 1 (iris:1) -> 2 (iris:2)",
        {"weight": 10.0, "forced": False},
    )
    assert event.to_dict()["rolloutId"] == r.id
    entry = registry.audit.list()[-1]
    assert (entry.actor, entry.action, entry.object) == ("alice", "rollout.start", "web")
    assert entry.details == {
        "rollout": 1,
        "strategy": "canary",
        "stable_revision": 1,
        "candidate_revision": 2,
        "stable_model": "iris:1",
        "candidate_model": "iris:2",
        "forced": False,
    }


def test_a_second_start_supersedes_the_active_rollout(registry: Registry) -> None:
    two_revisions(registry)
    first = start(registry)
    registry.deployments.apply(*deployment("web", "iris:3"), model="iris:3")
    second = start(registry, stable_revision=2, candidate_revision=3, forced=True, started_by=None)
    assert (second.number, second.phase, second.forced, second.started_by) == (2, "progressing", True, "it")
    old = registry.rollouts.get("web", 1)
    assert (old.phase, old.active, old.reason) == ("superseded", False, "superseded by rollout 2")
    assert old.finished_at is not None and old.finished_at >= first.started_at
    assert registry.rollouts.active("web") == second
    assert [r.number for r in registry.rollouts.list("web")] == [1, 2]
    assert [r.number for r in registry.rollouts.list("web", limit=1)] == [2]
    assert [e.kind for e in registry.rollouts.events(first.id)] == ["Started", "Superseded"]
    entry = registry.audit.list()[-1]
    assert (entry.action, entry.details["superseded"], entry.details["forced"]) == ("rollout.start", 1, True)
    with pytest.raises(errors.Conflict, match=r"rollout 1 of deployment 'web' has ended \(superseded\)"):
        registry.rollouts.update(first.id, step=1)


def test_the_database_refuses_a_second_active_rollout_of_one_deployment(registry: Registry) -> None:
    two_revisions(registry)
    r = start(registry)

    def sneak(s: Session) -> None:
        row = s.get(RolloutRow, r.id)
        assert row is not None
        now = utcnow()
        s.add(
            RolloutRow(
                **{c: getattr(row, c) for c in ("deployment_id", "strategy", "stable_revision", "spec")},
                number=2,
                phase="paused",
                candidate_revision=2,
                step=0,
                weight=0.0,
                failed_checks=0,
                passed_checks=0,
                started_at=now,
                step_started_at=now,
                updated_at=now,
                forced=False,
            )
        )

    with pytest.raises(errors.Conflict):
        registry.database.transaction(sneak, write=True)


def test_update_changes_the_rollout_with_its_event_and_audit_record(registry: Registry) -> None:
    two_revisions(registry)
    r = start(registry)
    later = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    moved = registry.rollouts.update(
        r.id,
        expect_phase="progressing",
        step=1,
        weight=50,
        passed_checks=0,
        step_started_at=later,
        event=("step", "10% -> 50%", {"verdict": "pass"}),
    )
    assert (moved.step, moved.weight, moved.step_started_at, moved.phase) == (1, 50.0, later, "progressing")
    assert moved.updated_at >= r.updated_at
    audited = len(registry.audit.list())
    paused = registry.rollouts.update(
        r.id,
        expect_phase=("progressing", "waiting"),
        phase="paused",
        reason="paused by bob",
        actor="bob",
        audit_action="rollout.pause",
        audit_details={"weight": 50},
    )
    assert (paused.phase, paused.reason, paused.active, paused.finished_at) == (
        "paused",
        "paused by bob",
        True,
        None,
    )
    [entry] = registry.audit.list()[audited:]
    assert (entry.actor, entry.action, entry.object) == ("bob", "rollout.pause", "web")
    assert entry.details == {"rollout": 1, "phase": "paused", "weight": 50}
    assert registry.audit.verify().intact
    assert [e.kind for e in registry.rollouts.events(r.id)] == ["Started", "step"]
    assert registry.rollouts.events(r.id)[1].data == {"verdict": "pass"}


def test_update_expecting_another_phase_is_a_conflict_and_changes_nothing(registry: Registry) -> None:
    two_revisions(registry)
    r = start(registry)
    registry.rollouts.update(r.id, expect_phase="progressing", phase="paused")
    before = registry.rollouts.get("web")
    with pytest.raises(errors.Conflict, match="rollout 1 of deployment 'web' is paused, not progressing"):
        registry.rollouts.update(
            r.id,
            expect_phase="progressing",
            phase="rolled_back",
            event=("rollback", "too many errors", None),
            audit_action="rollout.rollback",
        )
    assert registry.rollouts.get("web") == before
    assert [e.kind for e in registry.rollouts.events(r.id)] == ["Started"]
    assert registry.audit.list()[-1].action == "rollout.start"


def test_ending_a_rollout_sets_finished_at_and_makes_it_final(registry: Registry) -> None:
    two_revisions(registry)
    r = start(registry)
    done = registry.rollouts.update(r.id, phase="promoted", weight=100, reason="all steps passed")
    assert (done.phase, done.active) == ("promoted", False)
    assert done.finished_at is not None and done.finished_at == done.updated_at
    assert registry.rollouts.active("web") is None and registry.rollouts.active_all() == []
    assert registry.rollouts.get("web") == done
    with pytest.raises(errors.Conflict, match="has ended"):
        registry.rollouts.update(r.id, phase="progressing")
    # Events may still be added (the drain of the old replicas, say).
    registry.rollouts.add_event(r.id, "drained", "stable replicas stopped")
    assert [e.kind for e in registry.rollouts.events(r.id)] == ["Started", "drained"]
    # A next rollout starts at number 2.
    assert start(registry).number == 2


def test_events_come_back_in_the_order_written(registry: Registry) -> None:
    two_revisions(registry)
    r = start(registry)
    for i in range(12):
        registry.rollouts.add_event(r.id, "check", f"check {i}", {"i": i, "checks": [{"name": "x"}]})
    events = registry.rollouts.events(r.id)
    assert [e.message for e in events] == ["canary: revision 1 (iris:1) -> 2 (iris:2)"] + [
        f"check {i}" for i in range(12)
    ]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert all(a.at <= b.at for a, b in itertools.pairwise(events))
    assert [e.data["i"] for e in registry.rollouts.events(r.id, limit=3)] == [9, 10, 11]


def test_deleting_a_deployment_deletes_its_rollouts_and_events(registry: Registry) -> None:
    two_revisions(registry)
    two_revisions(registry, "other")
    r = start(registry)
    kept = start(registry, "other")
    registry.rollouts.add_event(r.id, "check", "pass")
    registry.deployments.delete("web")

    def count(s: Session) -> tuple[int, int]:
        rollouts = s.scalar(text("SELECT count(*) FROM rollouts"))
        events = s.scalar(text("SELECT count(*) FROM rollout_events"))
        return int(rollouts or 0), int(events or 0)

    assert registry.database.transaction(count) == (1, 1)  # the other deployment's rollout and its start
    assert registry.rollouts.active_all() == [kept]
    with pytest.raises(errors.NotFound, match=r"rollout \d+ not found"):
        registry.rollouts.events(r.id)
    two_revisions(registry)  # the name starts over, rollouts too
    with pytest.raises(errors.NotFound, match="deployment 'web' has no rollout"):
        registry.rollouts.get("web")
    assert start(registry).number == 1


def test_what_the_store_refuses(registry: Registry) -> None:
    two_revisions(registry)
    with pytest.raises(errors.NotFound, match="deployment 'nope' not found"):
        start(registry, "nope")
    with pytest.raises(errors.NotFound, match="revision 9 of deployment 'web' not found"):
        start(registry, candidate_revision=9)
    with pytest.raises(errors.InvalidInput, match="invalid weight 101"):
        start(registry, weight=101)
    with pytest.raises(errors.InvalidInput, match="a rollout spec must be JSON-able"):
        start(registry, spec={"x": float("nan")})
    r = start(registry)
    with pytest.raises(errors.InvalidInput, match="a rollout's strategy cannot change"):
        registry.rollouts.update(r.id, strategy="shadow")
    with pytest.raises(errors.InvalidInput, match="invalid rollout phase 'done'"):
        registry.rollouts.update(r.id, phase="done")
    with pytest.raises(errors.InvalidInput, match="invalid rollout phase 'done'"):
        registry.rollouts.update(r.id, expect_phase="done", step=1)
    with pytest.raises(errors.InvalidInput, match="step_started_at must be a datetime with a time zone"):
        registry.rollouts.update(r.id, step_started_at=datetime(2030, 1, 1))
    with pytest.raises(errors.NotFound, match="revision 7 of deployment 'web' not found"):
        registry.rollouts.update(r.id, candidate_revision=7)
    with pytest.raises(errors.NotFound, match="rollout 999 not found"):
        registry.rollouts.update(999, step=1)
    with pytest.raises(errors.NotFound, match="deployment 'web' has no rollout 5"):
        registry.rollouts.get("web", 5)
    assert registry.rollouts.get("web") == r  # nothing above changed it


def test_a_rollback_revision_carries_the_rollouts_reason(registry: Registry) -> None:
    two_revisions(registry)
    result = registry.deployments.rollback(
        "web", to_revision=1, change_cause="rollout 1 rolled back: success rate 80% < 99%"
    )
    assert (result.revision, result.changed) == (3, True)
    last = registry.deployments.history("web")[-1]
    assert (last.change_cause, last.model) == ("rollout 1 rolled back: success rate 80% < 99%", "iris:1")
    assert registry.audit.list()[-1].details["change_cause"] == last.change_cause
    assert registry.deployments.rollback("web").revision == 4
    assert registry.deployments.history("web")[-1].change_cause == "rollback to 2"  # the default cause


# -- migration 0006 ------------------------------------------------------------------------------------------


def test_migration_0006_upgrades_a_populated_0005_registry(fresh_url: str, tmp_path: Path) -> None:
    db = _database_at(fresh_url, "0005")
    try:
        assert "rollouts" not in inspect(db.engine).get_table_names()
        with db.engine.begin() as conn:  # what a Conveyor at 0005 left: a deployment with two revisions
            now = utcnow()
            conn.execute(
                text(
                    "INSERT INTO deployments (name, current_revision, created_at, updated_at) "
                    "VALUES ('web', 2, :now, :now)"
                ),
                {"now": now},
            )
            for revision in (1, 2):
                body, fp = deployment("web", f"iris:{revision}")
                conn.execute(
                    text(
                        "INSERT INTO deployment_revisions (deployment_id, revision, spec, fingerprint, "
                        "model, created_at, change_cause) "
                        "SELECT id, :r, :spec, :fp, :model, :now, 'apply' FROM deployments"
                    ),
                    {
                        "r": revision,
                        "spec": json.dumps(body),
                        "fp": fp,
                        "model": f"iris:{revision}",
                        "now": now,
                    },
                )
    finally:
        db.dispose()

    with Registry(fresh_url, LocalArtifactStore(tmp_path / "artifacts")) as registry:
        assert [r.model for r in registry.deployments.history("web")] == ["iris:1", "iris:2"]
        assert registry.rollouts.active("web") is None
        r = start(registry)
        assert (r.number, r.phase) == (1, "progressing")
        assert registry.rollouts.active_all() == [r]
    db = Database(fresh_url)
    try:
        with db.engine.connect() as conn:
            head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            assert conn.execute(select(RolloutRow.number)).scalars().all() == [1]
        # upgraded through 0006 to the newest migration, whichever that is now
        newest = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        assert newest is not None and head == newest >= "0006"
    finally:
        db.dispose()
