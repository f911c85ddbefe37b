"""Power of two choices: the less loaded of two distinct random candidates."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from conveyor.gateway.balance import power_of_two


def test_single_candidate_is_chosen_without_randomness() -> None:
    assert power_of_two(["a"], lambda _: 5, random.Random(0)) == "a"


def test_no_candidates_is_an_error() -> None:
    with pytest.raises(ValueError):
        power_of_two([], lambda _: 0, random.Random(0))


def test_two_candidates_always_give_the_less_loaded() -> None:
    loads = {"busy": 9, "idle": 1}
    rng = random.Random(1)
    assert {power_of_two(["busy", "idle"], loads.__getitem__, rng) for _ in range(50)} == {"idle"}


def test_the_most_loaded_of_many_is_never_chosen() -> None:
    loads = {"a": 0, "b": 3, "c": 3, "d": 100}
    rng = random.Random(2)
    picks = Counter(power_of_two(list(loads), loads.__getitem__, rng) for _ in range(2000))
    assert picks["d"] == 0
    assert picks["a"] > picks["b"] and picks["a"] > picks["c"]


def test_equal_loads_spread_evenly() -> None:
    rng = random.Random(3)
    picks = Counter(power_of_two(["a", "b", "c"], lambda _: 0, rng) for _ in range(3000))
    assert all(800 < n < 1200 for n in picks.values()), picks
