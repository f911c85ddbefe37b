"""``/api/v1/audit``: read the registry's hash-chained audit log and verify it (docs/security.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from conveyor.registry import Registry

MAX_LIMIT = 10_000


def audit_routes(registry: Registry, guard: Any = None) -> APIRouter:
    """The audit routes over ``registry``; ``guard`` (a ``Depends``), when given, runs before each."""
    api = APIRouter(tags=["audit"], dependencies=[guard] if guard is not None else [])

    @api.get("/audit")
    async def audit_log(
        since: Annotated[
            datetime | None,
            Query(description="Only records at or after this time (ISO 8601; UTC if no zone)."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many, the newest.")] = 100,
    ) -> dict[str, Any]:
        """Audit records, oldest first: seq, time, actor, action, object, details, prev_hash, hash."""
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        entries = await run_in_threadpool(registry.audit.list, since, limit)
        return {"records": [e.to_dict() for e in entries]}

    @api.get("/audit/verify")
    async def audit_verify() -> dict[str, Any]:
        """Check the whole chain: ``intact``, the head (``head_seq``, ``head_hash``: keep it elsewhere to
        notice a rewritten tail) and the first ``problem`` (seq, kind, message) when it is broken."""
        check = await run_in_threadpool(registry.audit.verify)
        return {**check.to_dict(), "intact": check.intact}

    return api
