"""Requests held for a scale-to-zero route until a replica is admitted, bounded in number and time.

Waiters sleep on futures that ``wake()`` resolves (a new table, an admission): no polling. Counts are kept
per route so the load report can tell the control plane to scale up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from conveyor.errors import Unavailable
from conveyor.routing_table import Hold

T = TypeVar("T")
RouteKey = tuple[str, str | None]


class HeldRequests:
    def __init__(self) -> None:
        self.counts: dict[RouteKey, int] = {}
        self.on_held: Callable[[], None] | None = None
        """Called as a request starts waiting: the load reporter posts now rather than at its next tick."""
        self._waiters: set[asyncio.Future[None]] = set()

    def held(self, key: RouteKey) -> int:
        return self.counts.get(key, 0)

    def wake(self) -> None:
        """Something changed (a table, an admission): every waiter checks again."""
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait(self, key: RouteKey, hold: Hold, what: str, check: Callable[[], T | None]) -> T:
        """Wait until ``check()`` returns something, and return it; Unavailable when ``hold`` is full or
        its timeout passes. ``check`` may raise (the route is gone) to end the wait."""
        held = self.counts.get(key, 0)
        if held >= hold.max_requests:
            raise Unavailable(f"no replica of {what} is running and {held} requests already wait for one")
        self.counts[key] = held + 1
        if self.on_held is not None:
            self.on_held()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold.timeout_s
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise Unavailable(f"no replica of {what} became available within {hold.timeout_s:g}s")
                fut: asyncio.Future[None] = loop.create_future()
                self._waiters.add(fut)
                try:
                    async with asyncio.timeout(remaining):  # not wait_for: it may swallow a cancellation
                        await fut
                except TimeoutError:
                    continue  # the deadline check above answers
                finally:
                    self._waiters.discard(fut)
                found = check()
                if found is not None:
                    return found
        finally:
            left = self.counts[key] - 1
            if left:
                self.counts[key] = left
            else:
                del self.counts[key]
