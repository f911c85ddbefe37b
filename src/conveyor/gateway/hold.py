"""Requests held until a replica is admitted, bounded in number and time: for a route scaled to zero, or one
whose first replicas are starting (the routing table's ``hold`` and its ``reason``).

Waiters sleep on futures that ``wake()`` resolves (a new table, an admission): no polling. Counts are kept
per route so the load report can tell the control plane to scale up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from conveyor.errors import Unavailable
from conveyor.protocol.table import STARTING, Hold

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
            raise Unavailable(f"{_no_replica(what, hold)} and {held} requests already wait for one")
        self.counts[key] = held + 1
        if self.on_held is not None:
            self.on_held()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold.timeout_s
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise Unavailable(_timed_out(what, hold))
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


def _no_replica(what: str, hold: Hold) -> str:
    if hold.reason == STARTING:
        return f"no replica of {what} is ready yet (its replicas are starting)"
    return f"no replica of {what} is running"


def _timed_out(what: str, hold: Hold) -> str:
    if hold.reason == STARTING:  # slow to load, or never getting ready: the deployment's events say which
        return (
            f"no replica of {what} got ready within {hold.timeout_s:g}s: its replicas are still starting "
            "(see the deployment's events)"
        )
    return f"no replica of {what} became available within {hold.timeout_s:g}s"
