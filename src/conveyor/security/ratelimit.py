"""Per-token rate limits: a token bucket per token, refilled at the token's rate, one second of burst."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from conveyor.errors import Overloaded


class TokenBucket:
    """``rate`` requests a second on average, at most ``burst`` at once (default: one second's worth)."""

    __slots__ = ("_clock", "_level", "_stamp", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._level = self.burst
        self._stamp = clock()

    def take(self) -> float:
        """Take one request; 0.0 when allowed, else the seconds until one would be."""
        now = self._clock()
        self._level = min(self.burst, self._level + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._level >= 1.0:
            self._level -= 1.0
            return 0.0
        return (1.0 - self._level) / self.rate


class RateLimits:
    """One bucket per token id, made on first use and dropped when the token's limit changes or it goes."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, token_id: str, name: str, rate: float) -> None:
        """Overloaded (429 with Retry-After) when the token is over its rate."""
        bucket = self._buckets.get(token_id)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[token_id] = TokenBucket(rate)
        wait = bucket.take()
        if wait > 0:
            raise Overloaded(
                f"token {name!r} is over its rate limit of {rate:g} requests/s; retry later",
                retry_after_s=max(1.0, math.ceil(wait)),
            )

    def keep_only(self, token_ids: set[str]) -> None:
        for gone in self._buckets.keys() - token_ids:
            del self._buckets[gone]
