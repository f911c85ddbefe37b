"""The autoscaler policy driven by simulated clocks and loads: no processes, no sleeping."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise

import pytest

from conveyor.control.autoscaler import AutoscalerState, AutoscalingPolicy, Decision, decide, observe
from conveyor.errors import InvalidInput

STEP = AutoscalingPolicy(
    min_replicas=1,
    max_replicas=8,
    target_in_flight=4,
    window_s=10,
    scale_up_stabilization_s=10,
    scale_down_stabilization_s=60,
)


@dataclass
class Step:
    time: float
    before: int
    decision: Decision

    @property
    def scaled(self) -> bool:
        return self.decision.desired != self.before


def simulate(
    policy: AutoscalingPolicy,
    load: Callable[[float], float],
    until: float,
    replicas: int = 1,
    state: AutoscalerState | None = None,
) -> list[Step]:
    """Sample and decide once a second; the target applies every decision at once."""
    state = state or AutoscalerState.for_policy(policy)
    steps = []
    for t in range(int(until) + 1):
        state = observe(state, t, load(t), replicas)
        decision = decide(policy, state, t, replicas)
        steps.append(Step(t, replicas, decision))
        state, replicas = decision.state, decision.desired
    return steps


def scale_times(steps: list[Step]) -> list[float]:
    return [s.time for s in steps if s.scaled]


def test_step_load_scales_up_within_the_windows_and_down_only_after_the_down_window() -> None:
    # 1 client until t=100, 32 until t=200, then none.
    def load(t: float) -> float:
        return 1 if t < 100 else 32 if t < 200 else 0

    steps = simulate(STEP, load, until=400)
    at = {s.time: s.decision.desired for s in steps}
    ups = [s.time for s in steps if s.decision.desired > s.before]
    downs = [s.time for s in steps if s.decision.desired < s.before]

    assert all(at[t] == 1 for t in range(100))
    assert ups and 100 < ups[0] <= 100 + STEP.window_s + STEP.scale_up_stabilization_s
    # 32 in flight / 4 per replica = 8 = max, reached one up-window later at most.
    assert at[100 + STEP.window_s + 2 * STEP.scale_up_stabilization_s] == 8
    assert max(at.values()) == 8
    assert downs and min(downs) >= 200 + STEP.scale_down_stabilization_s
    assert at[400] == 1


def test_the_first_scale_up_goes_to_the_lowest_recommendation_of_the_up_window() -> None:
    steps = simulate(STEP, lambda t: 1 if t < 100 else 32, until=140)
    first_up = next(s for s in steps if s.scaled)
    assert 1 < first_up.decision.desired < 8
    assert "lowest recommendation of the last 10s" in first_up.decision.reason


def test_a_spike_shorter_than_the_up_window_less_the_averaging_window_does_not_scale_up() -> None:
    # The average carries a spike for window_s after it ends: 5 s + 5 s < 15 s.
    policy = AutoscalingPolicy(target_in_flight=4, window_s=5, scale_up_stabilization_s=15)
    steps = simulate(policy, lambda t: 40 if 50 <= t < 55 else 2, until=200)
    assert scale_times(steps) == []
    assert any("up-stabilization until t+" in s.decision.reason for s in steps)


def test_a_fresh_state_waits_one_window_before_its_first_move() -> None:
    up = simulate(STEP, lambda t: 32, until=30, replicas=2)
    assert scale_times(up)[0] == STEP.scale_up_stabilization_s
    down = simulate(STEP, lambda t: 0, until=100, replicas=4)
    assert scale_times(down)[0] == STEP.scale_down_stabilization_s


def test_a_brief_dip_does_not_scale_down() -> None:
    policy = STEP
    steps = simulate(policy, lambda t: 2 if 100 <= t < 130 else 24, until=300, replicas=6)
    assert {s.decision.desired for s in steps} == {6}
    assert any("down-stabilization until t+" in s.decision.reason for s in steps)


@pytest.mark.parametrize("seed", range(5))
def test_noisy_load_makes_at_most_one_scale_decision_per_stabilization_window(seed: int) -> None:
    rng = random.Random(seed)
    policy = AutoscalingPolicy(
        min_replicas=1,
        max_replicas=20,
        target_in_flight=4,
        window_s=5,
        scale_up_stabilization_s=15,
        scale_down_stabilization_s=45,
    )
    # A slow wave between 2 and 14 replicas' worth of load, with heavy per-sample noise.
    levels = [rng.uniform(8, 56) for _ in range(30)]

    def load(t: float) -> float:
        return max(0.0, levels[int(t) // 60] * rng.uniform(0.3, 1.7))

    steps = simulate(policy, load, until=1799)
    scaled = [s for s in steps if s.scaled]
    assert len(scaled) >= 5  # the property is not vacuous
    for previous, step in pairwise(scaled):
        up = step.decision.desired > step.before
        window = policy.scale_up_stabilization_s if up else policy.scale_down_stabilization_s
        assert step.time - previous.time >= window, (previous, step)
    assert all(policy.min_replicas <= s.decision.desired <= policy.max_replicas for s in steps)


def test_oscillating_load_across_a_threshold_does_not_flap() -> None:
    # Averages alternate around 16 in flight, the 4 -> 5 replica boundary.
    steps = simulate(STEP, lambda t: 20 if (t // 3) % 2 else 12, until=600, replicas=4)
    downs = [s for s in steps if s.decision.desired < s.before]
    ups = [s for s in steps if s.decision.desired > s.before]
    assert ups == [] and downs == []


def test_recommendations_are_clamped_to_min_and_max() -> None:
    policy = AutoscalingPolicy(
        min_replicas=2,
        max_replicas=3,
        target_in_flight=1,
        window_s=5,
        scale_up_stabilization_s=0,
        scale_down_stabilization_s=0,
    )
    high = simulate(policy, lambda t: 100, until=30, replicas=2)
    assert high[-1].decision.desired == 3
    assert max(s.decision.desired for s in high) == 3
    low = simulate(policy, lambda t: 0, until=30, replicas=3)
    assert low[-1].decision.desired == 2
    assert min(s.decision.desired for s in low) == 2


def test_a_count_outside_the_bounds_is_corrected_at_once_even_without_data() -> None:
    state = AutoscalerState.for_policy(STEP)
    above = decide(STEP, state, 0, current_replicas=12)
    assert above.desired == 8 and "above max_replicas" in above.reason
    below = decide(STEP, state, 0, current_replicas=0)
    assert below.desired == 1 and "below min_replicas" in below.reason


ZERO = AutoscalingPolicy(
    min_replicas=0,
    max_replicas=8,
    target_in_flight=4,
    window_s=10,
    scale_up_stabilization_s=30,
    scale_down_stabilization_s=60,
    scale_to_zero=True,
    idle_to_zero_s=120,
)


def test_scale_from_zero_is_immediate_when_a_request_is_held() -> None:
    state = AutoscalerState.for_policy(ZERO)
    for t in range(100):
        state = observe(state, t, 0, 0)
        assert decide(ZERO, state, t, 0).desired == 0
    state = observe(state, 100, 1, 0)
    decision = decide(ZERO, state, 100, 0)
    assert decision.desired == 1
    assert "held at 0 replicas" in decision.reason


def test_scale_from_zero_sizes_for_the_held_requests() -> None:
    state = observe(AutoscalerState.for_policy(ZERO), 0, 10, 0)
    assert decide(ZERO, state, 0, 0).desired == 3
    state = observe(AutoscalerState.for_policy(ZERO), 0, 1000, 0)
    assert decide(ZERO, state, 0, 0).desired == ZERO.max_replicas


def test_a_burst_arriving_while_the_first_replica_starts_sizes_the_scale_from_zero() -> None:
    """The gateway reports its first held request at once; the rest of the burst comes in later reports,
    while the one replica that started is not ready yet: each report scales up to ceil(held / target)."""
    policy = replace(ZERO, max_replicas=4)
    state = observe(AutoscalerState.for_policy(policy), 0.0, 1, 0)
    first = decide(policy, state, 0.0, 0)
    assert first.desired == 1
    state = observe(first.state, 0.1, 9, 0)  # more held, the replica still starting
    second = decide(policy, state, 0.1, 1)
    assert second.desired == 3 and "start from zero" in second.reason
    state = observe(second.state, 0.2, 16, 0)
    third = decide(policy, state, 0.2, 3)
    assert third.desired == 4
    state = observe(third.state, 0.3, 40, 0)
    assert decide(policy, state, 0.3, 4).desired == 4  # max_replicas
    # Once a replica is ready the usual rules apply again, up-stabilization included.
    state = observe(third.state, 5.0, 1, 1)
    ready = decide(policy, state, 5.0, 4)
    assert not ready.state.from_zero and ready.desired == 4
    state = observe(ready.state, 6.0, 40, 1)
    assert decide(policy, state, 6.0, 4).desired == 4


def test_scaling_up_from_a_ready_version_still_waits_for_its_window() -> None:
    policy = AutoscalingPolicy(
        min_replicas=1, max_replicas=4, target_in_flight=4, window_s=10, scale_up_stabilization_s=30
    )
    state = observe(AutoscalerState.for_policy(policy), 0.0, 16, 0)  # starting, not from zero
    assert decide(policy, state, 0.0, 1).desired == 1


def test_scale_to_zero_after_idle_and_back_on_the_next_request() -> None:
    steps = simulate(ZERO, lambda t: 6 if t < 100 else 0 if t < 400 else 1, until=420, replicas=2)
    at = {s.time: s.decision.desired for s in steps}
    to_zero = [s for s in steps if s.scaled and s.decision.desired == 0]
    assert len(to_zero) == 1
    # The last request was in flight at t=99; the first idle sample is t=100.
    assert to_zero[0].time == 100 + ZERO.idle_to_zero_s
    assert "no requests for 120s" in to_zero[0].decision.reason
    assert all(at[t] == 0 for t in range(220, 400))
    assert at[400] == 1


def test_no_scale_to_zero_without_the_flag() -> None:
    policy = AutoscalingPolicy(min_replicas=1, window_s=10, scale_down_stabilization_s=30)
    steps = simulate(policy, lambda t: 0, until=1000, replicas=1)
    assert {s.decision.desired for s in steps} == {1}


def test_missing_data_holds_the_current_count() -> None:
    state = AutoscalerState.for_policy(ZERO)
    for t in range(0, 20):
        state = observe(state, t, 40, 2)
    # Metrics stop arriving: once the window is empty nothing moves, neither up, down nor to zero.
    for t in range(20, 1000, 7):
        decision = decide(ZERO, state, t, 2)
        state = decision.state
        if t >= 19 + ZERO.window_s:
            assert decision.desired == 2
            assert decision.reason == "no samples in the last 10s: holding at 2"


def test_no_samples_at_all_holds() -> None:
    decision = decide(STEP, AutoscalerState.for_policy(STEP), 5, 3)
    assert decision.desired == 3
    assert "no samples" in decision.reason


def test_observe_keeps_only_the_window() -> None:
    state = AutoscalerState.for_policy(STEP)
    for t in range(100):
        state = observe(state, t, t, 1)
    assert [s.time for s in state.samples] == list(range(90, 100))


def test_reasons_name_the_average_the_target_and_the_result() -> None:
    policy = AutoscalingPolicy(
        min_replicas=1, max_replicas=10, target_in_flight=4, window_s=10, scale_up_stabilization_s=0
    )
    state = AutoscalerState.for_policy(policy)
    for t, in_flight in enumerate([10, 15]):
        state = observe(state, t, in_flight, 1)
    decision = decide(policy, state, 1, 1)
    assert decision.desired == 4
    assert decision.reason == "avg in-flight 12.5 over 10s / target 4 -> 4 replicas"


def test_decide_is_pure() -> None:
    state = observe(AutoscalerState.for_policy(STEP), 0, 30, 1)
    assert decide(STEP, state, 0, 1) == decide(STEP, state, 0, 1)
    assert state.recommendations == ()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas (2) must be >= 1 and >= min_replicas (3)"),
        ({"max_replicas": 0, "min_replicas": 0, "scale_to_zero": True}, "max_replicas (0) must be >= 1"),
        ({"min_replicas": -1}, "min_replicas must be an integer >= 0"),
        ({"min_replicas": 1.5}, "min_replicas must be an integer >= 0"),
        ({"target_in_flight": 0}, "target_in_flight must be a finite number > 0"),
        ({"target_in_flight": float("nan")}, "target_in_flight must be a finite number > 0"),
        ({"window_s": 0}, "window_s must be a finite number > 0"),
        ({"scale_up_stabilization_s": -1}, "scale_up_stabilization_s must be a finite number >= 0"),
        ({"scale_down_stabilization_s": float("inf")}, "scale_down_stabilization_s must be a finite"),
        ({"idle_to_zero_s": -5}, "idle_to_zero_s must be a finite number >= 0"),
        ({"scale_to_zero": True}, "scale_to_zero requires min_replicas 0, got 1"),
        ({"min_replicas": 0}, "min_replicas 0 requires scale_to_zero=True"),
    ],
)
def test_invalid_policies_are_rejected_with_a_clear_message(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match="invalid autoscaling policy") as caught:
        AutoscalingPolicy(**fields)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_invalid_samples_are_rejected() -> None:
    state = observe(AutoscalerState.for_policy(STEP), 10, 1, 1)
    with pytest.raises(InvalidInput, match="before the previous sample"):
        observe(state, 5, 1, 1)
    with pytest.raises(InvalidInput, match="in_flight_total"):
        observe(state, 11, -1, 1)
    with pytest.raises(InvalidInput, match="current_replicas"):
        decide(STEP, state, 11, -1)


def test_the_worked_example_in_the_docs() -> None:
    # docs/autoscaling.md, "Worked example": keep the table true.
    steps = simulate(STEP, lambda t: 1 if t < 100 else 32 if t < 200 else 0, until=400)
    moves = [(s.time, s.before, s.decision.desired) for s in steps if s.scaled]
    assert moves == [(109, 1, 2), (119, 2, 8), (260, 8, 7), (320, 7, 1)]
    reasons = {s.time: s.decision.reason for s in steps}
    assert reasons[105].endswith("holding at 1: up-stabilization until t+4s")
    assert reasons[230].endswith("holding at 8: down-stabilization until t+30s")


def test_a_deployment_specs_autoscaling_block_becomes_the_policy() -> None:
    from conveyor.control.autoscaler import policy_from_spec
    from conveyor.spec import Deployment, load_documents

    text = """apiVersion: conveyor.dev/v1
kind: Deployment
metadata: {name: tiny}
spec:
  model: tiny:1
  autoscaling: {minReplicas: 0, maxReplicas: 4, targetInFlight: 3, scaleToZero: true}
"""
    (deployment,) = load_documents(text)
    assert isinstance(deployment, Deployment) and deployment.spec.autoscaling is not None
    policy = policy_from_spec(deployment.spec.autoscaling)
    assert (policy.min_replicas, policy.max_replicas, policy.target_in_flight) == (0, 4, 3.0)
    assert policy.scale_to_zero and policy.idle_to_zero_s == policy.scale_down_stabilization_s == 60.0
    assert policy == policy_from_spec(deployment.spec.autoscaling)  # pure: same input, same policy


def test_min_zero_without_scale_to_zero_is_refused_by_the_spec() -> None:
    from conveyor.spec import load_documents

    text = (
        "apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  model: x:1\n"
        "  autoscaling:\n    minReplicas: 0\n    maxReplicas: 2\n"
    )
    with pytest.raises(InvalidInput, match=r"f.yaml:7: spec.autoscaling: minReplicas: 0 needs scaleToZero"):
        load_documents(text, source="f.yaml")
