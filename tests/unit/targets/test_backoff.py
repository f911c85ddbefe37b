"""Restart backoff: doubling from the first crash, capped, and forgiven after a long enough run."""

from __future__ import annotations

from conveyor.targets.backoff import Backoff


def test_delays_double_per_crash_up_to_the_cap() -> None:
    b = Backoff(initial_s=0.5, factor=2, max_s=4)
    assert [b.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]


def test_a_crash_loop_grows_the_streak_and_a_long_run_resets_it() -> None:
    b = Backoff(reset_after_s=30)
    streak = 0
    for _ in range(3):
        streak = b.next_streak(streak, uptime_s=1.0)
    assert streak == 3
    assert b.next_streak(streak, uptime_s=31.0) == 1
