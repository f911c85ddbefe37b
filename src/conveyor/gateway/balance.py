"""Load balancing: power of two choices on in-flight requests, a pure function of the candidates' loads."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def power_of_two(candidates: Sequence[T], load: Callable[[T], int], rng: random.Random) -> T:
    """Pick two distinct candidates at random and return the less loaded (the first on a tie).

    Two random choices avoid the herding of "least loaded of all" under stale counts and cost O(1)
    (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing").
    """
    n = len(candidates)
    if n == 0:
        raise ValueError("no candidates to choose from")
    if n == 1:
        return candidates[0]
    i = rng.randrange(n)
    j = rng.randrange(n - 1)
    if j >= i:  # a second index distinct from the first, uniformly
        j += 1
    a, b = candidates[i], candidates[j]
    return b if load(b) < load(a) else a
