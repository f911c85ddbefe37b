"""``/api/v1/tokens``: create, list and revoke tokens (admin role). A new token is in the answer once; a
change reaches this process's verifier at once and every gateway with the next table."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from conveyor.control.auth import ApiAuth
from conveyor.control.management_bodies import TokenBody
from conveyor.registry import Registry
from conveyor.security.tokens import Principal


def token_routes(registry: Registry, auth: ApiAuth, admin: Any) -> APIRouter:
    api = APIRouter(tags=["tokens"])

    @api.get("/tokens")
    async def list_tokens(
        who: Principal = admin, all: Annotated[bool, Query(description="Revoked too.")] = False
    ) -> dict[str, Any]:
        infos = await run_in_threadpool(registry.tokens.list, include_revoked=all)
        return {"tokens": [i.to_dict() for i in infos]}

    @api.post("/tokens")
    async def create_token(body: TokenBody, who: Principal = admin) -> dict[str, Any]:
        """The new token (``token``: shown this once, only its salted hash is kept) and its record."""
        token, info = await run_in_threadpool(
            registry.tokens.create,
            body.name,
            body.role,
            models=body.models,
            expires_in_s=body.expires_in_seconds,
            rate_limit=body.rate_limit,
            by=who.actor,
        )
        await auth.reload()
        return {"token": token, **info.to_dict()}

    @api.delete("/tokens/{name}")
    async def revoke_token(name: str, who: Principal = admin) -> dict[str, Any]:
        """Revoke the live token of that name (or id): refused from now on, here and by every gateway."""
        info = await run_in_threadpool(registry.tokens.revoke, name, by=who.actor)
        await auth.reload()
        return info.to_dict()

    return api
