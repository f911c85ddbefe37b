"""A rollout's plan per strategy, and what each verdict does to it (control/rollout_plan.py)."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.control.rollout_plan import Step, decide, plan, traffic
from conveyor.spec.rollout import RolloutSpec


def spec(**fields: Any) -> RolloutSpec:
    return RolloutSpec.model_validate(fields)


def test_canary_takes_one_step_per_weight_with_its_manual_gates() -> None:
    steps = plan(spec(strategy="canary", steps=[5, 25, 50, 100], manualGates=[50]))
    assert [(s.kind, s.weight, s.passes, s.gate) for s in steps] == [
        ("canary", 5.0, 1, False),
        ("canary", 25.0, 1, False),
        ("canary", 50.0, 1, True),
        ("canary", 100.0, 1, False),
    ]


def test_canary_without_steps_uses_the_default_weights() -> None:
    assert [s.weight for s in plan(spec(strategy="canary"))] == [10.0, 50.0, 100.0]


def test_blue_green_previews_for_its_iterations() -> None:
    (step,) = plan(spec(strategy="blueGreen", iterations=4))
    assert (step.kind, step.weight, step.passes) == ("preview", 0.0, 4)
    assert not traffic(step, compare=10.0).any  # the candidate answers at its explicit version only


def test_shadow_mirrors_then_follows_its_canary_steps() -> None:
    alone = plan(spec(strategy="shadow", mirror=50, iterations=2))
    assert [(s.kind, s.mirror, s.passes) for s in alone] == [("shadow", 50.0, 2)]
    assert traffic(alone[0], compare=0).weight == 0.0 and traffic(alone[0], compare=0).mirror == 50.0
    then = plan(spec(strategy="shadow", steps=[20, 100]))
    assert [s.kind for s in then] == ["shadow", "canary", "canary"]


def test_ab_test_is_one_step_at_its_share_of_users() -> None:
    (step,) = plan(spec(strategy="abTest", abTest={"userHeader": "x-user-id", "weight": 10}, iterations=3))
    assert (step.kind, step.weight, step.passes) == ("abTest", 10.0, 3)


STEPS = (Step("canary", 5), Step("canary", 50, gate=True), Step("canary", 100))


@pytest.mark.parametrize(
    ("step", "passed", "failed", "verdict", "expected"),
    [
        (0, 0, 0, "pass", ("approve", 1, 0)),  # the next step is gated
        (1, 0, 0, "pass", ("advance", 0, 0)),
        (2, 0, 0, "pass", ("promote", 1, 0)),
        (0, 0, 0, "inconclusive", ("stay", 0, 0)),
        (0, 0, 0, "fail", ("stay", 0, 1)),
        (0, 0, 1, "fail", ("rollback", 0, 2)),
    ],
)
def test_a_verdict_decides(
    step: int, passed: int, failed: int, verdict: str, expected: tuple[str, int, int]
) -> None:
    d = decide(STEPS, step, passed, failed, verdict, threshold=2)
    assert (d.action, d.passed, d.failed) == expected
    assert d.why


def test_a_step_needing_several_passes_stays_until_it_has_them_and_a_failure_restarts_the_count() -> None:
    steps = (Step("shadow", 0, mirror=100, passes=3),)
    d = decide(steps, 0, 1, 0, "pass", threshold=5)
    assert (d.action, d.passed) == ("stay", 2)
    d = decide(steps, 0, 2, 0, "fail", threshold=5)
    assert (d.action, d.passed, d.failed) == ("stay", 0, 1)
    d = decide(steps, 0, 2, 1, "pass", threshold=5)
    assert d.action == "promote"


def test_a_manual_promotion_waits_for_approval_after_the_last_step() -> None:
    d = decide(STEPS, 2, 0, 0, "pass", threshold=2, manual_promotion=True)
    assert d.action == "approve"
