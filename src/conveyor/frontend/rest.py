"""The V2 REST front end: Starlette routes over any InferenceService (a replica's DataPlane or the gateway),
bodies read by frontend/bodies.py, errors mapped by frontend/http_errors.py."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from time import perf_counter
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.errors import ConveyorError, InvalidInput, UnsupportedMediaType
from conveyor.frontend.bodies import BodyReader, ClientGone
from conveyor.frontend.cors import add_cors
from conveyor.frontend.http_errors import error_response, status_for
from conveyor.observe import trace
from conveyor.observe.collectors import CONTENT_TYPE as METRICS_TYPE
from conveyor.observe.collectors import render
from conveyor.observe.recorder import RequestRecorder, error_version, recorder_for
from conveyor.protocol.service import EncodedRequest, InferenceService
from conveyor.settings import Settings

log = logging.getLogger("conveyor.frontend")
JSON = "application/json"
OCTET = "application/octet-stream"
ACCEPTED_TYPES = {JSON, OCTET}
HEADER_LENGTH = "inference-header-content-length"
REQUEST_ID = "x-request-id"
MAX_ID_HEADER = 256
# Generated ids: a random per-process prefix and a counter, unique without a syscall per request.
_ID_PREFIX = uuid.uuid4().hex[:12]
_id_counter = itertools.count(1)
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
MetricsGuard = Callable[[str | None], None]
"""Raises Unauthenticated / PermissionDenied unless the ``Authorization`` header may read ``/metrics``."""


def new_request_id() -> str:
    return f"{_ID_PREFIX}-{next(_id_counter)}"


def header_safe(value: str) -> bool:
    """Printable ASCII of a sane length: what may be echoed into a response header."""
    return 0 < len(value) <= MAX_ID_HEADER and value.isascii() and value.isprintable()


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status, media_type=JSON)


def check_content_type(ctype: str | None) -> None:
    """UnsupportedMediaType unless the Content-Type header (if any) is JSON or octet-stream."""
    if ctype and ctype.split(";", 1)[0].strip().lower() not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(f"content type {ctype!r} is not supported; send {JSON} or {OCTET}")


def parse_header_length(raw: str | None) -> int | None:
    """The Inference-Header-Content-Length header's value; InvalidInput unless an integer."""
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got {raw!r}") from None


def _status_of(exc: Exception) -> int:
    """The status the exception handlers below answer ``exc`` with."""
    if isinstance(exc, ConveyorError):
        return status_for(exc)
    return exc.status_code if isinstance(exc, HTTPException) else 500


def create_routes(
    plane: InferenceService,
    bodies: BodyReader,
    recorder: RequestRecorder | None = None,
    metrics_guard: MetricsGuard | None = None,
) -> list[Route]:
    """The V2 routes over ``plane``; ``bodies`` reads (and bounds) every request body; ``recorder`` counts
    every inference answer; ``GET /metrics`` asks ``metrics_guard`` (None: anyone may read)."""

    async def live(request: Request) -> Response:
        return _json({"live": plane.live()})

    async def ready(request: Request) -> Response:
        ok = plane.ready()
        return _json({"ready": ok}, 200 if ok else 503)

    async def server_metadata(request: Request) -> Response:
        return _json(plane.server_metadata())

    async def model_metadata(request: Request) -> Response:
        p = request.path_params
        plane.authorize(p["name"], p.get("version"), request.headers.get("authorization"))
        return _json(await plane.model_metadata(p["name"], p.get("version")))

    async def model_ready(request: Request) -> Response:
        p = request.path_params
        plane.authorize(p["name"], p.get("version"), request.headers.get("authorization"))
        doc = await plane.model_ready(p["name"], p.get("version"))
        return _json(doc, 200 if doc.get("ready") else 400)  # V2: a 4xx says "not ready", as Triton's 400

    async def infer(request: Request) -> Response:
        if recorder is None:
            return (await answer(request))[0]
        started = perf_counter()
        p, headers = request.path_params, request.headers
        try:
            response, version = await answer(request)
        except ClientGone:
            raise  # nobody to answer: not counted, as on the hot path
        except Exception as exc:
            version = error_version(exc, p.get("version"))
            span = getattr(request.state, "traceparent", None)  # this server's, once answer() made it
            elapsed = perf_counter() - started
            rid, parent = headers.get(REQUEST_ID), headers.get(trace.HEADER)  # the caller's span
            recorder.record(p["name"], version, _status_of(exc), elapsed, rid, span, parent)
            raise
        rid, span = response.headers.get(REQUEST_ID), response.headers.get(trace.HEADER)
        elapsed, parent = perf_counter() - started, headers.get(trace.HEADER)
        recorder.record(p["name"], version, 200, elapsed, rid, span, parent)
        return response

    async def answer(request: Request) -> tuple[Response, str | None]:
        """The answer, and the version that gave it."""
        p = request.path_params
        # This server's span (observe/trace.py), on the answer and its errors (_id_header) as on the hot path
        span = request.state.traceparent = trace.span(request.headers.get(trace.HEADER))
        check_content_type(request.headers.get("content-type"))
        header_len = parse_header_length(request.headers.get(HEADER_LENGTH))
        req_id = request.headers.get(REQUEST_ID) or new_request_id()
        plane.authorize(p["name"], p.get("version"), request.headers.get("authorization"))
        plane.admit(p["name"], p.get("version"))  # a refusal reads no body (and sends no 100 Continue)
        async with bodies.body(request) as body:
            raw = request.headers.raw  # the pairs as they came, for a split that reads them; not copied
            resp = await plane.infer(
                EncodedRequest(p["name"], p.get("version"), body, header_len, req_id, span, None, raw)
            )
        # The answer's id may come from the request body ("id"): it goes into the header only when it is a
        # valid header value, else the header carries the generated id (the body keeps the client's).
        rid = resp.request_id if header_safe(resp.request_id) else req_id
        headers = {REQUEST_ID: req_id if REQUEST_ID in request.headers else rid, trace.HEADER: span}
        if resp.json_length is None:
            return Response(resp.body, headers=headers, media_type=JSON), resp.model_version
        headers[HEADER_LENGTH] = str(resp.json_length)
        return Response(resp.body, headers=headers, media_type=OCTET), resp.model_version

    async def metrics(request: Request) -> Response:
        if metrics_guard is not None:
            metrics_guard(request.headers.get("authorization"))
        return Response(render(), media_type=METRICS_TYPE)

    model_paths = ["/v2/models/{name}", "/v2/models/{name}/versions/{version}"]
    # Starlette tries routes in order: inference, the hot path, first.
    routes = [Route(base + "/infer", infer, methods=["POST"]) for base in model_paths]
    routes += [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/metrics", metrics),
    ]
    for base in model_paths:
        routes.append(Route(base, model_metadata))
        routes.append(Route(base + "/ready", model_ready))
    return routes


def _id_header(request: Request) -> dict[str, str]:
    rid = request.headers.get(REQUEST_ID)
    headers = {REQUEST_ID: rid} if rid else {}
    span = getattr(request.state, "traceparent", None)  # set by an inference request
    if span is not None:
        headers[trace.HEADER] = span
    return headers


async def _conveyor_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConveyorError)
    status = status_for(exc)
    if status >= 500:
        log.error("request %s failed: %s", request.url.path, exc)
    return error_response(status, exc.message, _id_header(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), {**(exc.headers or {}), **_id_header(request)})


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Not an error: the client closed its connection mid-body; the answer goes nowhere (uvicorn drops it).
    log.debug("client left before sending the body of %s", request.url.path)
    return error_response(400, "client disconnected", _id_header(request))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}", _id_header(request))


def exception_handlers() -> dict[Any, Any]:
    """Error responses of every V2 REST app, replica or gateway: `{"error": ...}` with the mapped status."""
    return {
        ConveyorError: _conveyor_error,
        HTTPException: _http_error,
        ClientGone: _client_gone,
        Exception: _unexpected,
    }


def create_rest_app(
    service: InferenceService,
    settings: Settings,
    lifespan: Lifespan,
    metrics_guard: MetricsGuard | None = None,
) -> Starlette:
    """The V2 REST app over ``service``: a replica's and the gateway's are the same routes and handlers, so
    requests and errors look the same from either. ``GET /metrics`` asks ``metrics_guard``, if any."""
    bodies = BodyReader.from_settings(settings)
    recorder = recorder_for("rest", settings)
    app = Starlette(
        routes=create_routes(service, bodies, recorder, metrics_guard),
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    add_cors(app, settings.cors_origins)
    app.state.bodies = bodies  # run_app ends waiting body reads at shutdown
    app.state.recorder = recorder  # and the hot path records into it
    app.state.settings = settings
    return app
