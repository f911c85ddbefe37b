"""The management API's edge routes (docs/edge.md): edge nodes register, ask what to serve (conditionally,
with ETag / If-None-Match), download artifacts (with Range, to resume), send heartbeats; ``GET /edges``
lists them with whether each is behind. Nodes need a token whose role allows ``edge`` (role ``edge``)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from conveyor.control import edge_ops as ops
from conveyor.control.management_bodies import Body
from conveyor.control.signed_models import SignedModels
from conveyor.frontend.http_errors import error_response
from conveyor.registry import Registry
from conveyor.registry.edges import Heartbeat
from conveyor.security.tokens import Principal

DOWNLOADS = 4
"""Artifacts read for download at once: each is read whole (verified, decrypted if encrypted at rest)."""


class RegisterBody(Body):
    deployment: str = Field(description="The deployment this node follows.")
    labels: dict[str, str] = Field(default_factory=dict, description="The node's labels (site, region...).")
    address: str | None = Field(default=None, max_length=300, description="Where the node serves V2.")
    agent_version: str | None = Field(default=None, max_length=64, description="The agent's Conveyor.")


class HeartbeatBody(Body):
    version: str | None = Field(description="The version the node serves; null: none.")
    health: str = Field(description="serving, degraded (serving, its last update failed), empty, starting.")
    requests: int = Field(default=0, ge=0, description="Inference requests answered since the agent started.")
    failed: int = Field(default=0, ge=0, description="Of those, answered with an error.")
    problem: str | None = Field(default=None, description="Why the node refused or could not get a version.")
    cached: list[str] = Field(default_factory=list, max_length=64, description="Versions in its cache.")


def edge_routes(registry: Registry, signed: SignedModels, read: Any, deploy: Any, edge: Any) -> APIRouter:
    api = APIRouter(tags=["edge"])
    reading = asyncio.Semaphore(DOWNLOADS)

    @api.put("/edges/{name}")
    async def register(name: str, body: RegisterBody, who: Principal = edge) -> dict[str, Any]:
        """Register (or register again) an edge node following ``deployment``."""
        info = await run_in_threadpool(
            registry.edges.register,
            name,
            body.deployment,
            body.labels,
            address=body.address,
            agent_version=body.agent_version,
            by=who.actor,
        )
        return info.to_dict()

    @api.post("/edges/{name}/heartbeat")
    async def heartbeat(name: str, body: HeartbeatBody, who: Principal = edge) -> dict[str, Any]:
        """The node's latest state; 404 when it is not registered (it registers again)."""
        beat = Heartbeat(
            body.version, body.health, body.requests, body.failed, body.problem, tuple(body.cached)
        )
        await run_in_threadpool(registry.edges.heartbeat, name, beat)
        return {"ok": True}

    @api.get("/edges/{name}/desired")
    async def desired(name: str, request: Request, who: Principal = edge) -> Response:
        """What the node should serve: model, version, digest, signatures, where to download it. 304 when
        ``If-None-Match`` holds the current ETag."""

        def find() -> ops.Desired:
            return ops.desired_for(registry, signed, registry.edges.get(name))

        found = await run_in_threadpool(find)
        headers = {"ETag": found.etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        return Response(orjson.dumps(found.doc), media_type="application/json", headers=headers)

    @api.get(
        "/artifacts/{model}/{version}",
        response_class=Response,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The artifact's bytes"},
            206: {"content": {"application/octet-stream": {}}, "description": "The rest, from Range's start"},
        },
    )
    async def artifact(model: str, version: int, request: Request, who: Principal = edge) -> Response:
        """The version's artifact (plaintext, verified against its digest before it is sent); ``Range:
        bytes=START-`` answers 206 with the rest (a resumed download); ETag is the digest."""
        async with reading:

            def read() -> tuple[str, bytes]:
                v = registry.get_version(model, version)
                return v.sha256, registry.artifact_bytes(v)

            sha256, data = await run_in_threadpool(read)
        etag = f'"{sha256}"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        if_range = request.headers.get("if-range")
        try:
            span = ops.byte_range(request.headers.get("range"), len(data))
        except ops.RangeNotSatisfiable as exc:
            return error_response(416, exc.message, {**headers, "Content-Range": f"bytes */{len(data)}"})
        if span is None or (if_range is not None and if_range != etag):
            return Response(data, media_type="application/octet-stream", headers=headers)
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        return Response(data[start:end], 206, media_type="application/octet-stream", headers=headers)

    @api.get("/edges")
    async def list_edges(who: Principal = read) -> dict[str, Any]:
        """Every edge node: its version and the one it should serve, behind or not and for how long (lag),
        when it was last heard from, its health, request counts and last problem."""
        return {"edges": await run_in_threadpool(ops.edge_rows, registry, signed)}

    @api.delete("/edges/{name}")
    async def forget(name: str, who: Principal = deploy) -> dict[str, Any]:
        """Forget an edge node (a running agent registers again)."""
        await run_in_threadpool(registry.edges.delete, name, by=who.actor)
        return {"name": name, "deleted": True}

    return api
