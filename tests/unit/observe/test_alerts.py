"""Alert rules per deployment (built-in, changed, disabled, AlertRule resources) and the evaluator's state
machine: pending, firing after ``for``, resolved, over a real StackHistory."""

from __future__ import annotations

import re

from conveyor.observe.alert_state import Alert, Key
from conveyor.observe.alerts import Rule, evaluate, render, rules_for
from conveyor.observe.history import StackHistory
from conveyor.spec.resources import AlertRuleSpec, DeploymentSpec


def _spec(**fields: object) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"model": "iris:1", **fields})


def test_every_deployment_has_the_built_in_rules_its_spec_can_change_or_turn_off() -> None:
    names = [r.name for r in rules_for("iris", _spec(), [])]
    assert names == ["error-rate", "p99-latency", "crash-loop", "drift"]
    spec = _spec(
        alerts=[
            {"name": "error-rate", "threshold": 0.5, "for": "10s"},
            {"name": "drift", "enabled": False},
            {"name": "busy", "expr": "queue_depth", "threshold": 100, "severity": "info"},
        ]
    )
    rules = {r.name: r for r in rules_for("iris", spec, [])}
    assert set(rules) == {"error-rate", "p99-latency", "crash-loop", "busy"}
    changed = rules["error-rate"]
    assert (changed.threshold, changed.for_s, changed.expr.text, changed.severity) == (
        0.5,
        10.0,
        "error_rate(5m)",
        "critical",
    )
    assert (rules["busy"].op, rules["busy"].for_s, rules["busy"].source) == (">", 0.0, "deployment")


def test_alert_rule_resources_apply_to_their_deployment_or_to_all() -> None:
    everywhere = AlertRuleSpec.model_validate({"expr": "request_rate(1m)", "op": "<", "threshold": 1})
    only_other = AlertRuleSpec.model_validate({"expr": "drift_psi", "threshold": 1, "deployment": "other"})
    tighter = AlertRuleSpec.model_validate({"expr": "error_rate(1m)", "threshold": 0.01})
    rules = rules_for("iris", _spec(), [("idle", everywhere), ("odd", only_other), ("error-rate", tighter)])
    by_name = {r.name: r for r in rules}
    assert "odd" not in by_name and by_name["idle"].source == "AlertRule"
    assert (by_name["error-rate"].threshold, by_name["error-rate"].for_s) == (
        0.01,
        120.0,
    )  # for: the default's


def _history_with_errors(h: StackHistory, t: float, ok: float, failed: float) -> None:
    labels = {
        "component": "gateway",
        "instance": "gateway",
        "model": "iris",
        "version": "3",
        "protocol": "rest",
    }
    h.add(
        t,
        [
            ("conveyor_requests_total", {**labels, "code": "200"}, ok),
            ("conveyor_requests_total", {**labels, "code": "500"}, failed),
        ],
    )


def _error_rule(for_s: float) -> Rule:
    spec = _spec(alerts=[{"name": "error-rate", "expr": "error_rate(10s)", "for": f"{for_s}s"}])
    return next(r for r in rules_for("iris", spec, []) if r.name == "error-rate")


def test_an_alert_is_pending_then_fires_after_for_then_resolves() -> None:
    h = StackHistory()
    rule = _error_rule(5)
    states: dict[Key, Alert] = {}
    seen: list[tuple[float, str, str]] = []
    ok = failed = 0.0
    for t in range(0, 31, 2):
        ok += 10
        failed += 10 if 4 <= t <= 14 else 0  # half the requests fail from t=4 to t=14
        _history_with_errors(h, t, ok, failed)
        states, transitions = evaluate([rule], h, 1000.0 + t, states)
        seen += [(t, x.before, x.after) for x in transitions]
    assert seen == [(4, "inactive", "pending"), (10, "pending", "firing"), (24, "firing", "resolved")]
    alert = states[("error-rate", "iris", "3")]
    assert (alert.state, alert.active_since, alert.fired_at, alert.resolved_at) == (
        "resolved",
        1004,
        1010,
        1024,
    )
    assert alert.labels == {
        "alertname": "error-rate",
        "deployment": "iris",
        "severity": "critical",
        "version": "3",
    }
    assert re.fullmatch(r"0\.\d+ of the requests of version 3 failed", alert.annotations["summary"])


def test_a_pending_alert_whose_condition_stops_goes_back_to_inactive_without_firing() -> None:
    h = StackHistory()
    rule = _error_rule(60)
    states: dict[Key, Alert] = {}
    seen: list[tuple[str, str]] = []
    for t, failed in ((0, 0), (2, 10), (4, 10), (20, 10)):
        _history_with_errors(h, t, 10 * (t + 1), failed)
        states, transitions = evaluate([rule], h, float(t), states)
        seen += [(x.before, x.after) for x in transitions]
    assert seen == [("inactive", "pending"), ("pending", "inactive")] and states == {}


def test_a_firing_alert_of_a_rule_that_went_away_resolves_and_old_resolved_ones_are_dropped() -> None:
    h = StackHistory()
    rule = _error_rule(0)
    _history_with_errors(h, 0, 0, 0)
    _history_with_errors(h, 2, 10, 10)
    states, transitions = evaluate([rule], h, 100.0, {})
    assert [x.after for x in transitions] == ["firing"]
    states, transitions = evaluate([], h, 110.0, states)
    assert [(x.before, x.after) for x in transitions] == [("firing", "resolved")]
    states, _ = evaluate([], h, 110.0 + 10, states, keep_resolved_s=60)
    assert len(states) == 1
    states, _ = evaluate([], h, 110.0 + 61, states, keep_resolved_s=60)
    assert states == {}


def test_summary_templates_are_filled_like_prometheus() -> None:
    assert render("v{{ $labels.version }} at {{$value}}", {"version": "2"}, 0.123456) == "v2 at 0.1235"
