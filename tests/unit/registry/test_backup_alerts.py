"""Backup and restore of the alert tables (migration 0005): applied AlertRules and alert states come back
field by field, a used registry is refused, and archives written before the tables existed still restore."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conveyor import errors
from conveyor.observe.alert_state import Alert
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.registry.backup import backup
from conveyor.registry.orm import AlertRow, AlertRuleRow
from conveyor.registry.restore import restore
from conveyor.spec.resources import AlertRule
from tests.unit.registry.test_backup import (
    assert_refused_as_malformed,
    assert_untouched,
    older,
    populate,
    resealed,
)

RULE_FIELDS = ("name", "spec", "fingerprint", "created_at", "updated_at", "created_by")
ALERT_FIELDS = (
    *("rule", "deployment", "version", "severity", "state", "value", "active_since", "fired_at"),
    *("resolved_at", "labels", "annotations"),
)
FIRING = Alert(
    rule="slow",
    deployment="web",
    version="2",
    severity="critical",
    state="firing",
    value=0.75,
    active_since=1_700_000_000.25,
    fired_at=1_700_000_060.5,
    labels={"alertname": "slow", "team": "ml"},
    annotations={"summary": "p99 above 0.5 s"},
)
RESOLVED = Alert("error-rate", "web", "", "warning", "resolved", None, 1_700_000_001.0, 1_700_000_002.0, 3.0)


def with_alerts(reg: Registry) -> None:
    """A registry as a running stack leaves it: an applied AlertRule, a firing and a resolved alert."""
    populate(reg)
    rule = AlertRule.model_validate(
        {
            "metadata": {"name": "slow"},
            "spec": {
                "deployment": "web",
                "expr": "p99_latency(1m)",
                "threshold": 0.5,
                "severity": "critical",
            },
        }
    )
    reg.alerts.apply_rules([(rule.to_dict(), rule.fingerprint())], by="ci")
    reg.alerts.save({FIRING.key: FIRING, RESOLVED.key: RESOLVED})


def alert_snapshot(reg: Registry) -> dict[str, list[dict[str, Any]]]:
    """Every column but the database id."""

    def txn(s: Any) -> dict[str, list[dict[str, Any]]]:
        rules = s.scalars(select(AlertRuleRow).order_by(AlertRuleRow.name))
        alerts = s.scalars(select(AlertRow).order_by(AlertRow.rule))
        return {
            "rules": [{k: getattr(r, k) for k in RULE_FIELDS} for r in rules],
            "alerts": [{k: getattr(a, k) for k in ALERT_FIELDS} for a in alerts],
        }

    return reg.database.transaction(txn)


def test_alert_rules_and_alerts_are_restored_field_by_field(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    with_alerts(registry)
    made = backup(registry, tmp_path / "b.tar.gz")
    assert (made.alert_rules, made.alerts) == (1, 2)
    assert restore(fresh, tmp_path / "b.tar.gz") == made
    before = alert_snapshot(registry)
    assert [r["name"] for r in before["rules"]] == ["slow"] and len(before["alerts"]) == 2
    assert alert_snapshot(fresh) == before
    assert fresh.alerts.load() == {FIRING.key: FIRING, RESOLVED.key: RESOLVED}
    assert fresh.alerts.rules() == registry.alerts.rules()
    assert fresh.audit.verify().intact  # the rule's alertrule.apply record came with it


def test_the_alert_rows_are_written_in_a_stable_order(registry: Registry, tmp_path: Path) -> None:
    with_alerts(registry)
    backup(registry, tmp_path / "one.tar")
    backup(registry, tmp_path / "two.tar")
    read = [_members(tmp_path / n)[1] for n in ("one.tar", "two.tar")]
    assert read[0] == read[1]
    assert [(a["rule"], a["state"]) for a in read[0]["alerts"]] == [
        ("error-rate", "resolved"),
        ("slow", "firing"),
    ]
    assert read[0]["alerts"][1]["fired_at"] == "2023-11-14T22:14:20.500000+00:00"


def test_a_backup_of_schema_0004_without_the_alert_tables_still_restores(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    with_alerts(registry)
    backup(registry, tmp_path / "b.tar")
    restored = restore(fresh, older(tmp_path, "0004", "alert_rules", "alerts"))  # as before migration 0005
    assert (restored.alert_rules, restored.alerts, restored.versions, restored.deployments) == (0, 0, 3, 1)
    assert alert_snapshot(fresh) == {"rules": [], "alerts": []}
    assert [d.name for d in fresh.deployments.list()] == ["web"]


def test_the_alert_counts_are_checked_against_the_manifest(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    with_alerts(registry)
    backup(registry, tmp_path / "b.tar")

    def lose_an_alert(rows: dict[str, Any], manifest: dict[str, Any]) -> None:
        del rows["alerts"][0]  # the manifest still counts two

    with pytest.raises(errors.IntegrityError, match=r"row counts .* differ from the manifest"):
        restore(fresh, resealed(tmp_path, lose_an_alert, recount=False))
    assert_untouched(fresh, tmp_path)


def _twice(table: str) -> Any:
    def edit(rows: dict[str, Any], manifest: dict[str, Any]) -> None:
        rows[table].append(dict(rows[table][0]))

    return edit


def _state(rows: dict[str, Any], manifest: dict[str, Any]) -> None:
    rows["alerts"][0]["state"] = "exploded"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (_twice("alert_rules"), "an alert rule has no name or its name appears twice"),
        (_twice("alerts"), "an alert (rule, deployment, version) appears twice"),
        (_state, "alert 'error-rate' has an unknown state 'exploded'"),
    ],
)
def test_invalid_alert_rows_are_refused_before_anything_is_written(
    registry: Registry, fresh: Registry, tmp_path: Path, edit: Any, problem: str
) -> None:
    with_alerts(registry)
    backup(registry, tmp_path / "b.tar")
    assert_refused_as_malformed(fresh, tmp_path, edit, problem)
    assert alert_snapshot(fresh) == {"rules": [], "alerts": []}


def test_restore_refuses_a_registry_that_has_alerts(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    populate(registry)
    backup(registry, tmp_path / "b.tar")
    fresh.alerts.save({FIRING.key: FIRING})  # no model, no deployment, no audit record: only an alert
    with pytest.raises(errors.Conflict, match="holds 1 alerts"):
        restore(fresh, tmp_path / "b.tar")
    assert fresh.list_models() == []


@pytest.mark.postgres
def test_alerts_survive_sqlite_to_postgresql_and_back(
    registry: Registry, postgres_db_url: str, tmp_path: Path
) -> None:
    with_alerts(registry)
    backup(registry, tmp_path / "lite.tar.gz")
    with Registry(postgres_db_url, LocalArtifactStore(tmp_path / "pg-artifacts")) as pg:
        restore(pg, tmp_path / "lite.tar.gz")
        assert alert_snapshot(pg) == alert_snapshot(registry)
        backup(pg, tmp_path / "pg.tar")
    with Registry(f"sqlite:///{tmp_path / 'back.db'}", LocalArtifactStore(tmp_path / "back")) as back:
        restore(back, tmp_path / "pg.tar")
        assert alert_snapshot(back) == alert_snapshot(registry)
        assert back.alerts.load() == registry.alerts.load()


def _members(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    with tarfile.open(path) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        rows = json.loads(tar.extractfile("registry.json").read())  # type: ignore[union-attr]
    return manifest, rows
