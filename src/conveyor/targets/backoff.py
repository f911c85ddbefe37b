"""Restart policy for crashed replicas: exponential backoff, forgiven once a replica has stayed up a while."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before restarting after the ``n``-th crash of a streak: ``initial_s * factor**(n-1)``, capped.

    A replica that ran for ``reset_after_s`` before crashing starts a new streak, so one crash a day never
    waits the cap, while a crash loop does not spin the CPU loading models.
    """

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    reset_after_s: float = 30.0

    def delay(self, streak: int) -> float:
        return min(self.max_s, self.initial_s * self.factor ** max(0, streak - 1))

    def next_streak(self, streak: int, uptime_s: float) -> int:
        """The streak length counting a crash that came after ``uptime_s`` seconds of running."""
        return 1 if uptime_s >= self.reset_after_s else streak + 1
