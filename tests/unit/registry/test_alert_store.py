"""Alert rules and alert states in the registry: applied once (unchanged not rewritten), audited, and alert
states kept across a reopened database, as a restarted control plane finds them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import errors
from conveyor.observe.alert_state import Alert
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.spec.resources import AlertRule


def _rule(threshold: float) -> AlertRule:
    return AlertRule.model_validate(
        {"metadata": {"name": "slow"}, "spec": {"expr": "p99_latency(1m)", "threshold": threshold}}
    )


def test_alert_rules_are_applied_once_and_audited(registry: Registry) -> None:
    rule = _rule(0.5)
    first = registry.alerts.apply_rules([(rule.to_dict(), rule.fingerprint())], by="ci")
    again = registry.alerts.apply_rules([(rule.to_dict(), rule.fingerprint())], by="ci")
    changed = _rule(0.7)
    third = registry.alerts.apply_rules([(changed.to_dict(), changed.fingerprint())], by="ci")
    assert [(r["changed"], r["created"]) for r in (*first, *again, *third)] == [
        (True, True),
        (False, False),
        (True, False),
    ]
    assert [d["spec"]["threshold"] for d in registry.alerts.rules()] == [0.7]
    assert [e.action for e in registry.audit.list() if e.object == "slow"] == ["alertrule.apply"] * 2
    registry.alerts.delete_rule("slow", by="ci")
    assert registry.alerts.rules() == []
    with pytest.raises(errors.NotFound, match="no AlertRule named 'slow'"):
        registry.alerts.delete_rule("slow", by="ci")


def test_alert_states_survive_a_reopened_registry(tmp_path: Path, store: LocalArtifactStore) -> None:
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    firing = Alert(
        rule="error-rate",
        deployment="iris",
        version="2",
        severity="critical",
        state="firing",
        value=0.5,
        active_since=1_700_000_000.0,
        fired_at=1_700_000_005.5,
        labels={"alertname": "error-rate"},
        annotations={"summary": "half failed"},
    )
    pending = Alert("p99-latency", "iris", "2", "warning", "pending", 2.0, 1_700_000_001.0)
    with Registry(url, store) as reg:
        reg.alerts.save({firing.key: firing, pending.key: pending})
        reg.alerts.save({}, removed=[pending.key])
    with Registry(url, store) as reg:
        assert reg.alerts.load() == {firing.key: firing}
