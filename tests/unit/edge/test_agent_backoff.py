"""The agent's poll schedule (edge/agent/backoff.py): the interval while the control plane answers, doubling
per failure up to the cap, always jittered down to half (never above the bound the docs state)."""

from __future__ import annotations

import random

import pytest

from conveyor.edge.agent.backoff import next_poll_s


class Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("failures", "top"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (50, 10.0), (10_000, 10.0)],
)
def test_the_wait_doubles_per_failure_up_to_the_cap_and_is_drawn_from_its_upper_half(
    failures: int, top: float
) -> None:
    assert next_poll_s(failures, 1.0, 10.0, Fixed(0.999999)) == pytest.approx(top, rel=1e-5)
    assert next_poll_s(failures, 1.0, 10.0, Fixed(0.0)) == pytest.approx(top / 2)


def test_a_node_that_answers_polls_within_one_interval_and_nodes_do_not_poll_in_step() -> None:
    rng = random.Random(7)
    waits = [next_poll_s(0, 5.0, 30.0, rng) for _ in range(1000)]
    assert all(2.5 <= w <= 5.0 for w in waits)
    assert len({round(w, 4) for w in waits}) > 950


def test_a_cap_below_the_interval_never_makes_a_failing_node_poll_faster() -> None:
    assert next_poll_s(3, 5.0, 1.0, Fixed(0.999999)) == pytest.approx(5.0, rel=1e-5)
    with pytest.raises(ValueError, match="above zero"):
        next_poll_s(0, 0.0, 1.0, random.Random())
