"""``spec.rollout``: what each strategy accepts, its defaults, a canonical form that reads back as the same
rollout, and every problem reported as ``source:line: path: message``."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import errors
from conveyor.spec import Deployment, RolloutSpec, dump_yaml, load_documents

CANARY = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata: {name: iris}
spec:
  model: iris:2
  rollout:
    strategy: canary
    steps: [5, 25, 50, 100]
    interval: 1m
    threshold: 3
    progressDeadline: 15m
    manualGates: [50]
    analysis:
      minRequests: 50
      successRate: 99.5
      maxErrorRateIncrease: 1
      p99LatencyMs: 250
      maxLatencyRatio: null
      compare: 5
      maxDriftPsi: 0.2
      metrics:
        - {name: p95, expr: p95_latency(1m), max: 0.2}
        - {name: queue, expr: conveyor_queue_depth, max: 10, maxRatio: 2}
      prometheus: {url: "http://prometheus:9090", timeout: 2s}
    promotion: {alias: production, manual: true}
    webhooks:
      - url: https://hooks.example/rollouts
      - {url: "http://127.0.0.1:9/gate", events: [], confirm: step, timeout: 500ms}
"""


def one(text: str) -> Deployment:
    [d] = load_documents(text)
    assert isinstance(d, Deployment)
    return d


def rollout_of(block: str) -> RolloutSpec:
    d = one(f"apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {{name: d}}\nspec:\n{block}")
    assert d.spec.rollout is not None
    return d.spec.rollout


def problems(spec: str) -> list[str]:
    """The problems of a document whose spec block starts on line 5 (its first field)."""
    with pytest.raises(errors.InvalidInput) as info:
        load_documents(
            f"apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {{name: d}}\nspec:\n{spec}",
            source="f.yaml",
        )
    lines: list[str] = info.value.details["problems"]
    return lines


def test_an_empty_rollout_block_is_a_canary_with_the_default_steps_and_analysis() -> None:
    r = rollout_of("  model: m:1\n  rollout: {}\n")
    assert (r.strategy, r.steps, r.plan_weights()) == ("canary", None, [10.0, 50.0, 100.0])
    assert (r.interval_seconds, r.progress_deadline_seconds, r.iterations, r.threshold) == (30.0, 600.0, 3, 2)
    assert (r.analysis.min_requests, r.analysis.success_rate, r.analysis.max_latency_ratio) == (20, 99.0, 1.5)
    assert (r.analysis.agreement, r.analysis.compare, r.analysis.prometheus) == (99.0, 0.0, None)
    assert (r.promotion.alias, r.promotion.manual, r.webhooks, r.manual_gates) == (None, False, [], [])


def test_every_field_of_a_canary_is_read() -> None:
    r = one(CANARY).spec.rollout
    assert r is not None
    assert r.plan_weights() == [5.0, 25.0, 50.0, 100.0] and r.manual_gates == [50.0]
    assert (r.interval_seconds, r.progress_deadline_seconds, r.threshold) == (60.0, 900.0, 3)
    a = r.analysis
    assert (a.min_requests, a.success_rate, a.max_error_rate_increase, a.p99_latency_ms) == (50, 99.5, 1, 250)
    assert (a.max_latency_ratio, a.compare, a.max_drift_psi) == (None, 5.0, 0.2)
    assert [(m.name, m.expr, m.max, m.max_ratio, m.quantile) for m in a.metrics] == [
        ("p95", "p95_latency(1m)", 0.2, None, 0.99),
        ("queue", "conveyor_queue_depth", 10, 2, 0.99),
    ]
    assert a.prometheus is not None and a.prometheus.timeout_seconds == 2.0
    assert (r.promotion.alias, r.promotion.manual) == ("production", True)
    first, gate = r.webhooks
    assert (first.events, first.confirm, first.timeout_seconds) == (
        ["start", "step", "promotion", "rollback"],
        None,
        5.0,
    )
    assert (gate.events, gate.confirm, gate.timeout_seconds) == ([], "step", 0.5)


@pytest.mark.parametrize(
    "block",
    [
        CANARY.split("spec:\n", 1)[1],
        "  model: m:1\n  rollout: {strategy: blueGreen, iterations: 5, analysis: {successRate: null}}\n",
        "  model: m:1\n  rollout: {strategy: shadow, mirror: 25, steps: [50, 100], "
        "analysis: {tolerance: 0.01}}\n",
        "  model: m:1\n  rollout: {strategy: shadow}\n",
        "  model: m:1\n  rollout:\n    strategy: abTest\n    abTest: {header: {name: X-Variant, value: b}, "
        "userHeader: X-User-Id, cookie: uid, weight: 10}\n",
        "  model: m:1\n  rollout: {strategy: replace}\n",
    ],
)
def test_the_canonical_form_reads_back_as_the_same_rollout(block: str) -> None:
    d = one(f"apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {{name: d}}\nspec:\n{block}")
    again = Deployment.model_validate(d.to_dict())
    assert again == d and again.fingerprint() == d.fingerprint()
    assert load_documents(dump_yaml([d])) == [d]


def test_a_check_turned_off_stays_off_in_the_canonical_form() -> None:
    d = one(CANARY.replace("successRate: 99.5", "successRate: null"))
    analysis: dict[str, Any] = d.to_dict()["spec"]["rollout"]["analysis"]
    assert analysis["successRate"] is None and analysis["maxLatencyRatio"] is None
    assert analysis["agreement"] == 99.0 and "p99LatencyMs" in analysis and "prometheus" in analysis
    again = Deployment.model_validate(d.to_dict()).spec.rollout
    assert again is not None and again.analysis.success_rate is None


def test_mirror_is_written_only_for_shadow() -> None:
    assert "mirror" not in one(CANARY).to_dict()["spec"]["rollout"]
    shadow = rollout_of("  model: m:1\n  rollout: {strategy: shadow}\n")
    assert shadow.mirror == 100.0 and shadow.plan_weights() == []
    assert shadow.model_dump(by_alias=True)["mirror"] == 100.0


def test_plan_weights_per_strategy() -> None:
    def plan(rollout: str) -> list[float]:
        return rollout_of(f"  model: m:1\n  rollout: {rollout}\n").plan_weights()

    assert plan("{steps: [20, 60]}") == [20.0, 60.0]
    assert plan("{strategy: shadow, steps: [50, 100]}") == [50.0, 100.0]
    assert plan("{strategy: blueGreen}") == plan("{strategy: abTest, abTest: {cookie: u}}") == []


def test_header_names_are_kept_in_lowercase() -> None:
    r = rollout_of(
        "  model: m:1\n  rollout: {strategy: abTest, abTest: {header: {name: X-Beta, value: 'on'}, "
        "userHeader: X-User}}\n"
    )
    assert r.ab_test is not None and r.ab_test.header is not None
    assert (r.ab_test.header.name, r.ab_test.header.value, r.ab_test.user_header) == (
        "x-beta",
        "on",
        "x-user",
    )
    assert r.ab_test.weight == 10.0


def test_a_deployment_without_a_rollout_has_none_in_its_canonical_form() -> None:
    d = one("apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {name: t}\nspec: {model: t:1}\n")
    assert d.spec.rollout is None and "rollout" not in d.to_dict()["spec"]


R = "  model: m:1\n  rollout:\n"  # the rollout's fields start on line 7


@pytest.mark.parametrize(
    ("rollout", "expected"),
    [
        (
            "    strategy: linear\n",
            "f.yaml:7: spec.rollout.strategy: 'linear' is not one of 'replace', 'canary', 'blueGreen', "
            "'shadow' or 'abTest'",
        ),
        ("    steps: [50, 10]\n", "f.yaml:7: spec.rollout.steps: steps must increase (50 then 10)"),
        ("    steps: [10, 10]\n", "f.yaml:7: spec.rollout.steps: steps must increase (10 then 10)"),
        ("    steps: [0, 10]\n", "f.yaml:7: spec.rollout.steps[0]: must be > 0, got 0"),
        ("    steps: [50, 150]\n", "f.yaml:7: spec.rollout.steps[1]: must be <= 100, got 150"),
        ("    steps: []\n", "f.yaml:7: spec.rollout.steps: give at least one step"),
        (
            "    strategy: blueGreen\n    steps: [50]\n",
            "f.yaml:8: spec.rollout.steps: steps apply only to strategy canary or shadow, not blueGreen",
        ),
        (
            "    interval: 30\n",
            "f.yaml:7: spec.rollout.interval: must be a string, got integer 30",
        ),
        (
            "    interval: 3x\n",
            "f.yaml:7: spec.rollout.interval: invalid duration '3x': use a number and a unit: ms, s, m or h "
            "(e.g. 30s)",
        ),
        ("    interval: 0s\n", "f.yaml:7: spec.rollout.interval: interval must be > 0"),
        (
            "    interval: 5m\n    progressDeadline: 5m\n",
            "f.yaml:8: spec.rollout.progressDeadline: progressDeadline (5m) must be longer than the interval "
            "(5m)",
        ),
        ("    threshold: 0\n", "f.yaml:7: spec.rollout.threshold: must be >= 1, got 0"),
        ("    iterations: 1001\n", "f.yaml:7: spec.rollout.iterations: must be <= 1000, got 1001"),
        (
            "    manualGates: [40]\n",
            "f.yaml:7: spec.rollout.manualGates: manual gate 40 is not a step (steps: 10, 50, 100)",
        ),
        (
            "    strategy: blueGreen\n    manualGates: [100]\n",
            "f.yaml:8: spec.rollout.manualGates: manualGates wait before canary steps; strategy blueGreen "
            "has none",
        ),
        ("    manualGates: [50, 50]\n", "f.yaml:7: spec.rollout.manualGates: manual gate 50 is listed twice"),
        (
            "    mirror: 50\n",
            "f.yaml:7: spec.rollout.mirror: mirror applies only to strategy shadow, not canary",
        ),
        ("    strategy: shadow\n    mirror: 0\n", "f.yaml:8: spec.rollout.mirror: must be > 0, got 0"),
        (
            "    strategy: abTest\n",
            "f.yaml:6: spec.rollout: strategy abTest needs an abTest block: header, cookie or userHeader",
        ),
        (
            "    abTest: {cookie: uid}\n",
            "f.yaml:7: spec.rollout.abTest: abTest applies only to strategy abTest, not canary",
        ),
        (
            "    strategy: abTest\n    abTest: {weight: 5}\n",
            "f.yaml:8: spec.rollout.abTest: give header, cookie or userHeader: how a request picks its "
            "variant",
        ),
        (
            "    strategy: abTest\n    abTest: {cookie: 'my cookie'}\n",
            "f.yaml:8: spec.rollout.abTest.cookie: invalid cookie name 'my cookie': letters, digits and "
            "!#$%&'*+.^_`|~- (at most 128)",
        ),
        (
            "    strategy: abTest\n    abTest: {header: {name: x-v}}\n",
            "f.yaml:8: spec.rollout.abTest.header.value: required field missing",
        ),
        (
            "    strategy: abTest\n    abTest: {userHeader: x-u, weight: 101}\n",
            "f.yaml:8: spec.rollout.abTest.weight: must be <= 100, got 101",
        ),
        (
            "    analysis: {successRate: 101}\n",
            "f.yaml:7: spec.rollout.analysis.successRate: must be <= 100, got 101",
        ),
        (
            "    analysis: {minRequests: 0}\n",
            "f.yaml:7: spec.rollout.analysis.minRequests: must be >= 1, got 0",
        ),
        (
            "    strategy: blueGreen\n    analysis: {compare: 10}\n",
            "f.yaml:8: spec.rollout.analysis: compare applies to canary steps (strategy canary or shadow), "
            "not blueGreen",
        ),
        (
            "    analysis:\n      metrics: [{name: p95, expr: p95_latncy(1m), max: 1}]\n",
            "f.yaml:8: spec.rollout.analysis.metrics[0].expr: unknown indicator 'p95_latncy'",
        ),
        (
            "    analysis:\n      metrics: [{name: q, expr: conveyor_queue_depht, max: 1}]\n",
            "f.yaml:8: spec.rollout.analysis.metrics[0].expr: unknown metric 'conveyor_queue_depht'; did you "
            "mean 'conveyor_queue_depth'?",
        ),
        (
            "    analysis:\n      metrics: [{name: h, expr: held_requests, max: 1}]\n",
            "f.yaml:8: spec.rollout.analysis.metrics[0].expr: held_requests has no value per version: an "
            "analysis compares versions",
        ),
        (
            "    analysis:\n      metrics: [{name: q, expr: queue_depth}]\n",
            "f.yaml:8: spec.rollout.analysis.metrics[0]: check 'q' needs a bound: min, max or maxRatio",
        ),
        (
            "    analysis:\n      metrics: [{name: q, expr: queue_depth, min: 2, max: 1}]\n",
            "f.yaml:8: spec.rollout.analysis.metrics[0]: check 'q': min 2 is above max 1",
        ),
        (
            "    analysis:\n      metrics: [{name: q, expr: queue_depth, max: 1}, "
            "{name: q, expr: p99_latency(1m), max: 1}]\n",
            "f.yaml:8: spec.rollout.analysis.metrics: check 'q' is listed twice",
        ),
        (
            "    analysis: {prometheus: {url: 'prometheus:9090'}}\n",
            "f.yaml:7: spec.rollout.analysis.prometheus.url: invalid Prometheus URL 'prometheus:9090': use "
            "http://HOST[:PORT]/PATH or https://...",
        ),
        (
            "    promotion: {alias: '7'}\n",
            "f.yaml:7: spec.rollout.promotion.alias: invalid alias '7': an alias cannot be all digits "
            "(it reads as a version)",
        ),
        (
            "    webhooks: [{url: 'ftp://x/y'}]\n",
            "f.yaml:7: spec.rollout.webhooks[0].url: invalid webhook URL 'ftp://x/y': use "
            "http://HOST[:PORT]/PATH or https://...",
        ),
        (
            "    webhooks: [{url: 'http://h/x', events: [start, finish]}]\n",
            "f.yaml:7: spec.rollout.webhooks[0].events[1]: 'finish' is not one of 'start', 'step', "
            "'promotion', 'rollback' or 'check'",
        ),
        (
            "    webhooks: [{url: 'http://h/x', events: [step, step]}]\n",
            "f.yaml:7: spec.rollout.webhooks[0].events: event 'step' is listed twice",
        ),
        (
            "    webhooks: [{url: 'http://h/x', events: []}]\n",
            "f.yaml:7: spec.rollout.webhooks[0]: webhook 'http://h/x' has no events and no confirm: it would "
            "never be called",
        ),
        (
            "    webhooks: [{url: 'http://h/x', confirm: start}]\n",
            "f.yaml:7: spec.rollout.webhooks[0].confirm: 'start' is not one of 'step' or 'promotion'",
        ),
        (
            "    webhooks: [{url: 'http://h/x', timeout: 0ms}]\n",
            "f.yaml:7: spec.rollout.webhooks[0].timeout: timeout must be > 0",
        ),
        (
            "    stepz: [1]\n",
            "f.yaml:7: spec.rollout.stepz: unknown field; did you mean 'steps'? allowed: strategy, steps, "
            "interval, iterations, threshold, progressDeadline, manualGates, mirror, abTest, analysis, "
            "promotion, webhooks",
        ),
    ],
)
def test_each_rollout_problem_names_its_field_and_line(rollout: str, expected: str) -> None:
    [line] = problems(R + rollout)
    assert line.startswith(expected), line
