"""Who may call the management API: bearer tokens checked against the registry's records, a role per route.

The control plane reloads the records every ``REFRESH_S`` (a token revoked by any process stops working
within that time) and hands every new set to ``on_change``: the routing state pushes it to the gateways, so
a revocation reaches every process within a second (docs/security.md). Refused logins go to the audit log,
at most ``REFUSALS_RECORDED`` a minute per process; the rest are counted in one record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from conveyor.errors import ConveyorError, Unauthenticated
from conveyor.registry import Registry
from conveyor.security.tokens import Principal, TokenRecord, Verifier

log = logging.getLogger("conveyor.control")
REFRESH_S = 0.25
REFUSALS_RECORDED = 10
"""Refused logins recorded one by one per minute and process; beyond that, one record counts them."""
_bearer = HTTPBearer(
    auto_error=False, description="A Conveyor token: `conveyor tokens create NAME --role ...`"
)


class ApiAuth:
    """The management API's verifier, kept current from the registry."""

    def __init__(
        self, registry: Registry, on_change: Callable[[list[TokenRecord]], None] | None = None
    ) -> None:
        self.registry = registry
        self.verifier = Verifier()
        self._on_change = on_change
        self._loaded: list[TokenRecord] | None = None
        self._task: asyncio.Task[None] | None = None
        self._refusals = _RefusalCounter()

    async def reload(self) -> None:
        """Read the records now; a new set replaces the verifier's and goes to ``on_change``."""
        records = await run_in_threadpool(self.registry.tokens.records)
        if records != self._loaded:
            self._loaded = records
            self.verifier.replace(records)
            if self._on_change is not None:
                self._on_change(records)

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._follow(), name="conveyor-token-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self.reload()
                await self._refusals.flush(self.registry)
            except ConveyorError as exc:  # the database is away: keep the last records, say it once a burst
                log.warning("cannot reload tokens: %s", exc)

    def authenticate(self, authorization: str | None) -> Principal:
        return self.verifier.authenticate(authorization)

    async def refused(self, request: Request, why: str) -> None:
        client = request.client.host if request.client else "?"
        await self._refusals.add(self.registry, f"{request.method} {request.url.path}", client, why)


class _RefusalCounter:
    def __init__(self) -> None:
        self.window_start = time.monotonic()
        self.recorded = 0
        self.suppressed = 0

    async def add(self, registry: Registry, route: str, client: str, why: str) -> None:
        await self.flush(registry)
        if self.recorded >= REFUSALS_RECORDED:
            self.suppressed += 1
            return
        self.recorded += 1
        await _audit(registry, f"client:{client}", "auth.refused", route, {"reason": why})

    async def flush(self, registry: Registry) -> None:
        if time.monotonic() - self.window_start < 60:
            return
        suppressed, self.suppressed, self.recorded = self.suppressed, 0, 0
        self.window_start = time.monotonic()
        if suppressed:
            await _audit(
                registry, "control-plane", "auth.refused", "api", {"more": suppressed, "within_s": 60}
            )


async def _audit(registry: Registry, actor: str, action: str, obj: str, details: dict[str, Any]) -> None:
    try:
        await run_in_threadpool(registry.audit.append, action, obj, actor=actor, details=details)
    except ConveyorError as exc:
        log.warning("cannot record a refused login in the audit log: %s", exc)


def requires(auth: ApiAuth, action: str) -> Any:
    """A route dependency: the request's principal, if its token allows ``action``; else 401 / 403."""

    async def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        header = request.headers.get("authorization")
        try:
            found = auth.authenticate(header)
        except Unauthenticated as exc:
            await auth.refused(request, exc.message)
            raise
        found.require(action)
        request.state.principal = found
        return found

    return Depends(principal)
