"""When the agent polls next: the poll interval while the control plane answers, exponential backoff while it
does not; both jittered so that many edge nodes never poll in step (a pure function, unit-tested)."""

from __future__ import annotations

import random


def next_poll_s(failures: int, interval_s: float, max_backoff_s: float, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` failed polls in a row (0: the last one succeeded).

    The base is ``interval_s``, doubled per failure up to ``max_backoff_s`` (never below the interval); the
    wait is drawn between half the base and the base ("equal jitter"), so a node that answers polls at most
    one interval apart, and one whose control plane is away asks again within ``max_backoff_s``.
    """
    if interval_s <= 0 or max_backoff_s <= 0:
        raise ValueError("the poll interval and the longest backoff must be above zero")
    base = (
        interval_s
        if failures <= 0
        else min(max(max_backoff_s, interval_s), interval_s * 2.0 ** min(failures, 32))
    )
    return base * (0.5 + 0.5 * rng.random())
