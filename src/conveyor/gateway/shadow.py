"""Second sends: a request mirrored to a shadow candidate, or sent to stable to compare a canary's answer.

The second send starts with the caller's request and goes through the same upstream, so it has the same
per-attempt deadline (and an outer one, ``timeout_s``); nobody awaits it but its own task, which then waits
for the caller's answer and compares the two (gateway/compare.py). The caller's answer never waits for it
and never sees its failure. At most ``limit`` (64) are in flight per gateway; more are dropped and counted.
The gateway's stop cancels and awaits every one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING

from conveyor.errors import ConveyorError
from conveyor.frontend.http_errors import status_for
from conveyor.gateway.compare import FAILED, Comparison, compare_answers
from conveyor.observe.recorder import SHADOWS, ShadowCounts
from conveyor.protocol.service import EncodedRequest, EncodedResponse
from conveyor.tasks import cancel_all

if TYPE_CHECKING:
    from conveyor.gateway.split import Split
    from conveyor.gateway.table import Route

log = logging.getLogger("conveyor.gateway")
MAX_IN_FLIGHT = 64
INLINE_COMPARE_BYTES = 64 * 1024
"""Answers up to this size (both together) are compared on the event loop; larger ones in a thread."""
Send = Callable[["Route", EncodedRequest], Awaitable[EncodedResponse]]
Answer = EncodedResponse | BaseException
"""What the caller got: its answer, or the error it raised (CancelledError: the caller left)."""


class SecondSends:
    def __init__(
        self,
        send: Send,
        *,
        counts: ShadowCounts = SHADOWS,
        limit: int = MAX_IN_FLIGHT,
        timeout_s: float | None = None,
    ) -> None:
        """``send(route, request)``: one attempt on a replica of ``route``, without holding or retrying."""
        self._send = send
        self.counts = counts
        self.limit = limit
        self.timeout_s = timeout_s
        self.tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    def start(self, split: Split, target: Route, request: EncodedRequest) -> asyncio.Future[Answer] | None:
        """Send ``request`` (for ``target``'s version) in the background; the caller sets the returned
        future to its own answer when it has one. None: dropped (``limit`` in flight) or stopped."""
        if self._stopped:
            return None
        if len(self.tasks) >= self.limit:
            self.counts.drop(split.spec.name, target.version or "")
            return None
        loop = asyncio.get_running_loop()
        caller: asyncio.Future[Answer] = loop.create_future()
        task = loop.create_task(self._run(split, target, request, caller))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return caller

    async def stop(self) -> None:
        self._stopped = True
        await cancel_all(list(self.tasks))

    async def _run(
        self, split: Split, target: Route, request: EncodedRequest, caller: asyncio.Future[Answer]
    ) -> None:
        name, deadline = split.spec.name, None
        if self.timeout_s is not None:
            deadline = asyncio.get_running_loop().time() + self.timeout_s
        started = perf_counter()
        second: Answer
        try:
            async with asyncio.timeout_at(deadline):
                second = await self._send(target, request)
            code = 200
        except TimeoutError as exc:
            second, code = exc, 504
        except ConveyorError as exc:
            second, code = exc, status_for(exc)
        except Exception as exc:  # a bug in a second send must not stop the comparisons
            log.exception("request %s: the send to %s failed", request.request_id, target.version)
            second, code = exc, 500
        self.counts.sent(name, target.version or "", code, perf_counter() - started)
        try:
            async with asyncio.timeout_at(deadline):
                first = await caller
        except TimeoutError:
            return
        if isinstance(first, asyncio.CancelledError):
            return  # the caller left: nothing to compare with
        candidate_second = target is split.candidate
        stable, candidate = (first, second) if candidate_second else (second, first)
        comparison = await _compare(stable, candidate, split.spec.tolerance)
        self.counts.compared(
            name, split.candidate.version or "", comparison.result, comparison.max_abs_difference
        )


async def _compare(stable: Answer, candidate: Answer, tolerance: float) -> Comparison:
    if isinstance(stable, BaseException) or isinstance(candidate, BaseException):
        return Comparison(FAILED)
    try:
        if len(stable.body) + len(candidate.body) <= INLINE_COMPARE_BYTES:
            return compare_answers(stable, candidate, tolerance)
        return await asyncio.to_thread(compare_answers, stable, candidate, tolerance)
    except Exception:  # answers no decoder foresaw: a failed comparison, never a lost task
        log.exception("comparing two answers failed")
        return Comparison(FAILED)
