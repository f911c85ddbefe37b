"""The dashboard (docs/observability.md, Dashboard): ``/ui``'s static files and the data of its charts.

The files hold no data, so they are served without a token; the page sends the token (from the URL's
fragment, which never reaches a server) as ``Authorization: Bearer`` on its calls to ``/api/v1``. A strict
Content-Security-Policy allows only the page's own files: no inline script, no other origin.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from conveyor.errors import NotFound
from conveyor.observe.history import KEEP_S, StackHistory
from conveyor.observe.series import deployment_series
from conveyor.registry import Registry
from conveyor.security.tokens import Principal

UI_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "chart.js": "text/javascript; charset=utf-8",
    "views.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    # Revalidate every load (an upgraded control plane serves new files); the ETag makes that a 304.
    "cache-control": "no-cache",
}


def ui_routes() -> APIRouter:
    """``GET /ui`` (to ``/ui/``), ``/ui/`` (the page) and ``/ui/FILE``; read once, when the app is built."""
    router = APIRouter(include_in_schema=False)
    package = resources.files("conveyor.observe") / "ui"
    files: dict[str, tuple[bytes, str, str]] = {}
    for name, media_type in UI_FILES.items():
        body = (package / name).read_bytes()
        files[name] = (body, media_type, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')

    def serve(name: str, request: Request) -> Response:
        found = files.get(name)
        if found is None:
            raise NotFound(f"no such file: /ui/{name}")
        body, media_type, etag = found
        headers = {**SECURITY_HEADERS, "etag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    @router.api_route("/ui", methods=["GET", "HEAD"])
    async def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=308)  # the browser keeps the #token fragment

    @router.api_route("/ui/", methods=["GET", "HEAD"])
    async def index(request: Request) -> Response:
        return serve("index.html", request)

    @router.api_route("/ui/{name}", methods=["GET", "HEAD"])
    async def ui_file(name: str, request: Request) -> Response:
        return serve(name, request)

    return router


def series_routes(registry: Registry, state: Any, read: Any) -> APIRouter:
    """``GET /deployments/{name}/series``: the charts' data, from the stack history the control plane keeps
    in ``state.history`` (the app's state; none yet: empty series)."""
    api = APIRouter()

    @api.get("/deployments/{name}/series", tags=["deployments"])
    async def series(
        name: str,
        who: Principal = read,
        since: Annotated[
            float, Query(gt=0, le=KEEP_S, description="Seconds back from the latest point.")
        ] = 600.0,
        step: Annotated[float, Query(gt=0, le=3600, description="Seconds between points (at least).")] = 2.0,
        window: Annotated[
            float, Query(gt=0, le=KEEP_S, description="Seconds each point's rate and quantiles cover.")
        ] = 10.0,
    ) -> dict[str, Any]:
        """Per version, over the last ``since`` seconds: requests/s, the ratio of server errors, p50 and p99
        latency in seconds, as the gateway counted them (what clients saw). ``t`` are the points' times (Unix
        seconds, the control plane's clock) and ``now`` the latest: ask again with a short ``since`` to get
        only what is new. Empty until the first scrapes."""
        await run_in_threadpool(registry.deployments.get, name)  # NotFound: 404
        history: StackHistory | None = getattr(state, "history", None)
        base: dict[str, Any] = {"deployment": name, "step": step, "window": window}
        if history is None:
            return {**base, "now": None, "t": [], "versions": {}}
        match = {"model": name, "component": "gateway"}  # the gateway's model label: the deployment's name
        found = await run_in_threadpool(
            deployment_series, history, match, since_s=since, step_s=step, window_s=window
        )
        return {**base, **found}

    return api
