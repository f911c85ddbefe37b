"""The management API (``/api/v1``, docs/control-plane.md): FastAPI routes over the registry and the running
control plane (``ControlRuntime``). Registry work runs in a worker thread, runtime calls on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from conveyor import __version__
from conveyor.control import API_HEADER
from conveyor.control import management_ops as ops
from conveyor.control.alert_routes import alert_routes
from conveyor.control.audit_routes import audit_routes
from conveyor.control.auth import ApiAuth, requires
from conveyor.control.drift_routes import drift_routes
from conveyor.control.edge_routes import edge_routes
from conveyor.control.management_bodies import ApplyBody, DiffBody, GatewayReport, RollbackBody, ScaleBody
from conveyor.control.rollout_routes import rollout_routes
from conveyor.control.runtime import ControlRuntime
from conveyor.control.signed_models import SignedModels
from conveyor.control.token_routes import token_routes
from conveyor.control.ui_routes import series_routes, ui_routes
from conveyor.errors import ConveyorError
from conveyor.frontend.cors import add_cors
from conveyor.frontend.http_errors import error_response, status_for
from conveyor.registry import Registry
from conveyor.security.tokens import Principal
from conveyor.settings import Settings
from conveyor.spec.loader import dotted_path

log = logging.getLogger("conveyor.control")
KEEPALIVE_S = 5.0
"""A blank line on the routing watch after this long without a table, so both ends see a dead peer."""
NDJSON = "application/x-ndjson"
APPLY_SETTLE_S = 3.0
"""How long apply waits for every live gateway to route what it applied before answering anyway."""
T = TypeVar("T")

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/json": {"example": {"error": "message"}}}}
    for status, text in (
        (400, "Invalid input"),
        (401, "No token, or a malformed, unknown, expired or revoked one"),
        (403, "The token's role does not allow this"),
        (404, "Not found"),
        (409, "Conflict"),
        (503, "Unavailable"),
    )
}


def create_api(
    registry: Registry, runtime: ControlRuntime, settings: Settings, auth: ApiAuth | None = None
) -> FastAPI:
    """The management API app. Every route but ``/health`` needs a token whose role allows it (``auth``;
    by default one over ``registry`` that pushes token changes to ``runtime``); the token's name is recorded
    as ``created_by`` of the revisions it makes and as the actor of its audit records."""
    if auth is None:
        auth = ApiAuth(registry, runtime.tokens_changed)
    app = FastAPI(
        title="Conveyor management API",
        version=__version__,
        description="Deployments, their revisions and replicas; the routing table for gateways.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    _install_error_handlers(app)
    signed = SignedModels.from_settings(settings)  # requireSignedModels, checked at apply
    app.include_router(_routes(registry, runtime, auth, signed), prefix="/api/v1", responses=_ERRORS)
    # The dashboard: /ui's files need no token (they hold no data); its charts' data does.
    series = series_routes(registry, app.state, requires(auth, "read"))
    app.include_router(series, prefix="/api/v1", responses=_ERRORS)
    drifts = drift_routes(registry, app.state, requires(auth, "read"))
    app.include_router(drifts, prefix="/api/v1", responses=_ERRORS)
    alerts = alert_routes(registry, requires(auth, "read"), requires(auth, "deploy"))
    app.include_router(alerts, prefix="/api/v1", responses=_ERRORS)
    rollouts = rollout_routes(
        registry, app.state, requires(auth, "read"), requires(auth, "deploy"), runtime.changed
    )
    app.include_router(rollouts, prefix="/api/v1", responses=_ERRORS)
    edges = edge_routes(registry, signed, *(requires(auth, a) for a in ("read", "deploy", "edge")))
    app.include_router(edges, prefix="/api/v1", responses=_ERRORS)
    app.include_router(ui_routes())
    app.add_middleware(_MarkAnswers)
    add_cors(app, settings.cors_origins)  # outermost: 401s and errors carry the CORS headers too
    app.state.auth = auth
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            await auth.start()
            try:
                yield state
            finally:
                await auth.stop()

    app.router.lifespan_context = lifespan
    return app


class _MarkAnswers:
    """Pure ASGI (no buffering): adds ``API_HEADER`` to every HTTP answer, the NDJSON watch included."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def marked(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (API_HEADER.encode(), b"v1")]
            await send(message)

        await self.app(scope, receive, marked)


def _routes(registry: Registry, runtime: ControlRuntime, auth: ApiAuth, signed: SignedModels) -> APIRouter:
    api = APIRouter()
    read, deploy, admin, route = (requires(auth, a) for a in ("read", "deploy", "admin", "route"))

    async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(fn, *args, **kwargs)

    @api.get("/health", tags=["control plane"])
    async def health() -> dict[str, Any]:
        health: dict[str, Any] = {"status": "ok", "version": __version__, "epoch": runtime.epoch}
        if (election := runtime.leadership()) is not None:
            health["election"] = election
        return health

    @api.get("/models", tags=["models"])
    async def list_models(who: Principal = read) -> dict[str, Any]:
        models = await in_thread(registry.list_models)
        return {"models": [m.to_dict() for m in models]}

    @api.get("/models/{name}", tags=["models"])
    async def get_model(name: str, who: Principal = read) -> dict[str, Any]:
        return await in_thread(ops.model_detail, registry, name)

    @api.post("/apply", tags=["deployments"])
    async def apply(body: ApplyBody, who: Principal = deploy) -> dict[str, Any]:
        """Validate every document, resolve every model reference, then apply each (or only report)."""
        results = await in_thread(
            ops.apply_documents,
            registry,
            body.documents,
            dry_run=body.dry_run,
            user=who.actor,
            policy=signed,
        )
        deployments = [r for r in results if r["kind"] == "Deployment"]  # AlertRules need no reconcile
        changed = [r["name"] for r in deployments if r["changed"] and not body.dry_run]
        for name in changed:
            runtime.changed(name)
        if changed:  # gateways route what apply returns (held while its replicas start: docs/serving.md)
            await runtime.settle(APPLY_SETTLE_S)
        return {"results": results}

    @api.post("/diff", tags=["deployments"])
    async def diff(body: DiffBody, who: Principal = read) -> dict[str, Any]:
        """What apply would change, per document: live and new spec, model reference resolved on both sides
        (version and digest) as apply resolves it; ``changed`` is apply's own rule. Stores nothing."""
        results = await in_thread(ops.diff_documents, registry, body.documents)
        return {"differs": any(r["changed"] for r in results), "deployments": results}

    @api.get("/deployments", tags=["deployments"])
    async def list_deployments(who: Principal = read) -> dict[str, Any]:
        infos = await in_thread(lambda: registry.deployments.list())
        return {"deployments": [ops.status(i, runtime) for i in infos]}

    @api.get("/deployments/{name}", tags=["deployments"])
    async def get_deployment(name: str, who: Principal = read) -> dict[str, Any]:
        """DeploymentStatus plus its ``revisions``, its replicas (``instances``) and its recent ``events``."""
        info, extra = await in_thread(ops.describe, registry, name)
        # The replica list is "instances": "replicas" is already the DeploymentStatus counts.
        return {
            **ops.status(info, runtime),
            "revisions": extra["revisions"],
            "instances": runtime.replicas(name),
            "events": extra["events"],
        }

    @api.delete("/deployments/{name}", tags=["deployments"])
    async def delete_deployment(name: str, who: Principal = deploy) -> dict[str, Any]:
        """Delete the deployment and its revisions; its replicas drain and stop."""
        await in_thread(lambda: registry.deployments.delete(name, user=who.actor))
        runtime.changed(name)
        return {"name": name, "deleted": True}

    @api.post("/deployments/{name}/scale", tags=["deployments"])
    async def scale(name: str, body: ScaleBody, who: Principal = deploy) -> dict[str, Any]:
        """A new revision with ``spec.replicas``; 409 for an autoscaled deployment."""
        result = await in_thread(ops.scale, registry, name, body.replicas, user=who.actor)
        if result.changed:
            runtime.changed(name)
        return result.to_dict()

    @api.post("/deployments/{name}/rollback", tags=["deployments"])
    async def rollback(
        name: str, who: Principal = deploy, body: RollbackBody | None = None
    ) -> dict[str, Any]:
        """A new revision with an earlier revision's spec and model (default: the one before current), with
        the ``model`` it runs and ``next_apply``: what a later apply of its model reference would roll out
        when an alias moved since (else null)."""
        to_revision = body.to_revision if body is not None else None
        result, extra = await in_thread(ops.rollback, registry, name, to_revision, user=who.actor)
        if result.changed:
            runtime.changed(name)
        return {**result.to_dict(), **extra}

    @api.get("/deployments/{name}/revisions", tags=["deployments"])
    async def revisions(name: str, who: Principal = read) -> dict[str, Any]:
        history = await in_thread(lambda: registry.deployments.history(name))
        return {"revisions": [r.to_dict() for r in history]}

    @api.get("/deployments/{name}/events", tags=["deployments"])
    async def events(
        name: str,
        who: Principal = read,
        limit: Annotated[int, Query(ge=1, le=10_000)] = ops.RECENT_EVENTS,
    ) -> dict[str, Any]:
        found = await in_thread(lambda: registry.deployments.events(name, limit))
        return {"events": [e.to_dict() for e in found]}

    @api.get("/replicas", tags=["control plane"])
    async def replicas(who: Principal = read) -> dict[str, Any]:
        return {"replicas": runtime.replicas()}

    @api.get("/endpoints", tags=["control plane"])
    async def endpoints(who: Principal = read) -> dict[str, Any]:
        """Where to send inference requests: the live gateways, and each deployment's URL and replicas."""
        infos = await in_thread(lambda: registry.deployments.list())
        gateways = runtime.gateways()
        base = next((str(g["url"]).rstrip("/") for g in gateways if g.get("url")), None)
        return {
            "gateways": gateways,
            "endpoints": [
                {
                    "name": i.name,
                    "model": i.model,
                    "url": base + ops.endpoint_path(i.name) if base else None,
                    "replicas": runtime.replica_counts(i.name),
                    "instances": [
                        {k: r.get(k) for k in ("id", "version", "state", "address")}
                        for r in runtime.replicas(i.name)
                    ],
                }
                for i in infos
            ],
        }

    @api.get("/routing", tags=["gateways"])
    async def routing(who: Principal = route) -> dict[str, Any]:
        return runtime.routing()

    @api.get("/routing/watch", tags=["gateways"], response_class=StreamingResponse)
    async def routing_watch(who: Principal = route) -> StreamingResponse:
        """NDJSON: the current table at once, then every new one; a blank keep-alive line every 5 s."""
        return StreamingResponse(_ndjson(runtime.watch()), media_type=NDJSON)

    @api.post("/gateways/report", tags=["gateways"])
    async def report(body: GatewayReport, who: Principal = route) -> dict[str, Any]:
        runtime.report(body.model_dump(by_alias=True))
        return {"ok": True}

    api.include_router(token_routes(registry, auth, admin))
    api.include_router(audit_routes(registry, admin))
    return api


async def _ndjson(tables: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """One orjson line per table; a blank line after ``KEEPALIVE_S`` of silence. The pending ``anext`` lives
    across keep-alives (cancelling it would end the watch); it is cancelled when the client goes away."""
    pending: asyncio.Task[dict[str, Any]] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(tables))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
            if not done:
                yield b"\n"
                continue
            try:
                table = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield orjson.dumps(table) + b"\n"
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(tables, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


def _install_error_handlers(app: FastAPI) -> None:
    async def conveyor_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConveyorError)
        return error_response(status_for(exc), exc.message)

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        lines = [
            f"body: invalid JSON ({e.get('ctx', {}).get('error', 'decode error')})"
            if e["type"] == "json_invalid"
            else f"{_field(e['loc'])}: {ops.error_text(e)}"
            for e in exc.errors()
        ]
        return error_response(400, "\n".join(lines) or "invalid request")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = f"no such path: {request.method} {request.url.path} (see /docs)"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message, dict(exc.headers or {}))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)

    app.add_exception_handler(ConveyorError, conveyor_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    return dotted_path(parts) or (str(loc[0]) if loc else "request")
