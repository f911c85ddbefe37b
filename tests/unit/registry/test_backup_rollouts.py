"""Backup and restore of the rollout tables (migration 0006): rollouts and their events come back field by
field and in order, invalid rows are refused before anything is written, and archives written before the
tables existed still restore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conveyor import errors
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.registry.backup import backup
from conveyor.registry.orm import DeploymentRow, RolloutEventRow, RolloutRow
from conveyor.registry.restore import restore
from tests.unit.registry.test_backup import assert_refused_as_malformed, older, populate, resealed


def with_rollouts(reg: Registry) -> None:
    """``populate``'s deployment web (revisions 1-3) with an ended rollout and an active, paused one."""
    populate(reg)
    fields: dict[str, Any] = {
        "stable_model": "iris:1",
        "candidate_model": "iris:3",
        "strategy": "canary",
        "spec": {"strategy": "canary", "steps": [10.0, 100.0]},
        "weight": 10.0,
        "started_by": "ci",
    }
    first = reg.rollouts.start("web", stable_revision=1, candidate_revision=2, **fields)
    reg.rollouts.add_event(first.id, "check", "fail: success rate 80% < 99%", {"checks": [{"name": "x"}]})
    reg.rollouts.update(first.id, phase="rolled_back", reason="success rate 80% < 99%")
    second = reg.rollouts.start("web", stable_revision=1, candidate_revision=3, forced=True, **fields)
    reg.rollouts.update(second.id, phase="paused", step=1, weight=100, failed_checks=1, passed_checks=2)


ROW_FIELDS = tuple(c.key for c in RolloutRow.__table__.columns if c.key not in ("id", "deployment_id"))


def rollout_snapshot(reg: Registry) -> list[dict[str, Any]]:
    """Every rollout column but the ids, with its deployment's name and its events (no ids either)."""

    def txn(s: Any) -> list[dict[str, Any]]:
        out = []
        stmt = select(RolloutRow, DeploymentRow.name).join(DeploymentRow).order_by(RolloutRow.number)
        for row, name in s.execute(stmt).tuples():
            events = s.scalars(
                select(RolloutEventRow)
                .where(RolloutEventRow.rollout_id == row.id)
                .order_by(RolloutEventRow.id)
            )
            out.append(
                {
                    "deployment": name,
                    **{k: getattr(row, k) for k in ROW_FIELDS},
                    "events": [(e.at, e.kind, e.message, e.data) for e in events],
                }
            )
        return out

    return reg.database.transaction(txn)


def test_rollouts_and_their_events_are_restored_field_by_field(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    with_rollouts(registry)
    made = backup(registry, tmp_path / "b.tar.gz")
    assert (made.rollouts, made.rollout_events) == (2, 3)  # start and check; start
    assert restore(fresh, tmp_path / "b.tar.gz") == made
    before = rollout_snapshot(registry)
    assert [(r["number"], r["phase"]) for r in before] == [(1, "rolled_back"), (2, "paused")]
    assert rollout_snapshot(fresh) == before
    active = fresh.rollouts.active("web")
    assert active is not None and (active.number, active.weight, active.forced) == (2, 100.0, True)
    assert fresh.audit.verify().intact  # the rollout.start records came with it
    assert fresh.rollouts.get("web", 1).reason == "success rate 80% < 99%"


def test_a_backup_of_schema_0005_without_the_rollout_tables_still_restores(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    with_rollouts(registry)
    backup(registry, tmp_path / "b.tar")
    restored = restore(fresh, older(tmp_path, "0005", "rollouts", "rollout_events"))
    assert (restored.rollouts, restored.rollout_events, restored.deployments) == (0, 0, 1)
    assert rollout_snapshot(fresh) == [] and fresh.rollouts.active_all() == []


def _set(index: int, field: str, value: Any) -> Any:
    def edit(rows: dict[str, Any], manifest: dict[str, Any]) -> None:
        rows["rollouts"][index][field] = value

    return edit


def _twice(rows: dict[str, Any], manifest: dict[str, Any]) -> None:
    rows["rollouts"].append(dict(rows["rollouts"][0]))


def _orphan_event(rows: dict[str, Any], manifest: dict[str, Any]) -> None:
    rows["rollout_events"][0]["number"] = 7


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (_set(0, "deployment", "ghost"), "a rollout of an unknown deployment 'ghost'"),
        (_twice, "rollout 1 of deployment 'web' appears twice"),
        (_set(0, "phase", "exploded"), "rollout 1 of 'web' has an unknown phase 'exploded'"),
        (_set(0, "phase", "waiting"), "deployment 'web' has two active rollouts"),
        (_orphan_event, "an event of a missing rollout 7 of 'web'"),
    ],
)
def test_invalid_rollout_rows_are_refused_before_anything_is_written(
    registry: Registry, fresh: Registry, tmp_path: Path, edit: Any, problem: str
) -> None:
    with_rollouts(registry)
    backup(registry, tmp_path / "b.tar")
    assert_refused_as_malformed(fresh, tmp_path, edit, problem)
    assert rollout_snapshot(fresh) == []


def test_the_rollout_counts_are_checked_against_the_manifest(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    with_rollouts(registry)
    backup(registry, tmp_path / "b.tar")

    def lose_an_event(rows: dict[str, Any], manifest: dict[str, Any]) -> None:
        del rows["rollout_events"][0]

    with pytest.raises(errors.IntegrityError, match=r"row counts .* differ from the manifest"):
        restore(fresh, resealed(tmp_path, lose_an_event, recount=False))
    assert rollout_snapshot(fresh) == []


@pytest.mark.postgres
def test_rollouts_survive_sqlite_to_postgresql_and_back(
    registry: Registry, postgres_db_url: str, tmp_path: Path
) -> None:
    with_rollouts(registry)
    backup(registry, tmp_path / "lite.tar.gz")
    with Registry(postgres_db_url, LocalArtifactStore(tmp_path / "pg-artifacts")) as pg:
        restore(pg, tmp_path / "lite.tar.gz")
        assert rollout_snapshot(pg) == rollout_snapshot(registry)
        backup(pg, tmp_path / "pg.tar")
    with Registry(f"sqlite:///{tmp_path / 'back.db'}", LocalArtifactStore(tmp_path / "back")) as back:
        restore(back, tmp_path / "pg.tar")
        assert rollout_snapshot(back) == rollout_snapshot(registry)
