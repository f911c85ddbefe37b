"""The V2 gRPC front end (``inference.GRPCInferenceService``) over any InferenceService: replica or gateway.

It runs on grpc.aio in the caller's event loop, so it can share a process and a loop with the REST server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, TypeVar

import grpc

from conveyor.errors import ConveyorError, Unavailable
from conveyor.frontend.grpc_errors import grpc_status_for, retry_metadata
from conveyor.frontend.rest import new_request_id
from conveyor.observe import trace
from conveyor.observe.recorder import RequestRecorder, error_version
from conveyor.protocol.grpc import pb, pb_grpc
from conveyor.protocol.protobuf import body_to_infer_response, infer_request_to_body
from conveyor.protocol.service import EncodedRequest, InferenceService

log = logging.getLogger("conveyor.frontend")
REQUEST_ID = "x-request-id"
R = TypeVar("R")
Handler = Callable[[Any, Any, Any], Awaitable[R]]


def _metadata_value(context: Any, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return str(v)
    return None


def _authorization(context: Any) -> str | None:
    """The caller's ``authorization`` metadata (gRPC keys are lower case), as HTTP's header."""
    return _metadata_value(context, "authorization")


def _guarded(method: Handler[R]) -> Handler[R]:
    """Errors become a status with a clear message; only a bug becomes INTERNAL, never bad input."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Any) -> R:
        try:
            return await method(self, request, context)
        except ConveyorError as e:
            code, message, trailers = grpc_status_for(e), e.message, retry_metadata(e)
            if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS):
                log.error("gRPC %s failed: %s", method.__name__, e)
        except Exception as e:
            log.exception("unexpected error in gRPC %s", method.__name__)
            code, message, trailers = grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}", ()
        rid = _metadata_value(context, REQUEST_ID) or getattr(request, "id", "")
        if rid:
            trailers = (*trailers, (REQUEST_ID, rid))
        await context.abort(code, message, trailing_metadata=trailers)
        raise AssertionError("unreachable: abort raises")

    return wrapper


def _tensor_metadata(target: Any, tensors: list[dict[str, Any]]) -> None:
    for t in tensors:
        target.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])


class _Servicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, service: InferenceService, recorder: RequestRecorder | None = None) -> None:
        self._service = service
        self._recorder = recorder

    @_guarded
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self._service.live())

    @_guarded
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self._service.ready())

    @_guarded
    async def ModelReady(self, request: Any, context: Any) -> Any:
        self._service.authorize(request.name, request.version or None, _authorization(context))
        doc = await self._service.model_ready(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=bool(doc.get("ready")))

    @_guarded
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        doc = self._service.server_metadata()
        return pb.ServerMetadataResponse(
            name=doc["name"], version=doc["version"], extensions=doc["extensions"]
        )

    @_guarded
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        self._service.authorize(request.name, request.version or None, _authorization(context))
        doc = await self._service.model_metadata(request.name, request.version or None)
        resp = pb.ModelMetadataResponse(name=doc["name"], versions=doc["versions"], platform=doc["platform"])
        _tensor_metadata(resp.inputs, doc["inputs"])
        _tensor_metadata(resp.outputs, doc["outputs"])
        return resp

    @_guarded
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        parent = _metadata_value(context, trace.HEADER)  # the caller's span, if it sent one
        span = trace.span(parent)  # this server's (observe/trace.py)
        recorder = self._recorder
        if recorder is None:
            return await self._infer(request, context, span)
        started = perf_counter()
        version = request.model_version or None
        try:
            response = await self._infer(request, context, span)
        except ConveyorError as exc:
            code = grpc_status_for(exc).name
            version = error_version(exc, version)
            elapsed = perf_counter() - started
            recorder.record(request.model_name, version, code, elapsed, request.id, span, parent)
            raise
        except Exception:
            elapsed = perf_counter() - started
            recorder.record(request.model_name, version, "INTERNAL", elapsed, request.id, span, parent)
            raise
        elapsed = perf_counter() - started
        recorder.record(request.model_name, response.model_version, "OK", elapsed, response.id, span, parent)
        return response

    async def _infer(self, request: Any, context: Any, span: str) -> Any:
        rid = request.id or _metadata_value(context, REQUEST_ID) or new_request_id()
        version = request.model_version or None
        self._service.authorize(request.model_name, version, _authorization(context))
        self._service.admit(request.model_name, version)  # a refusal converts nothing
        if request.raw_input_contents:
            body, json_length = infer_request_to_body(request)  # a join: no per-element work
        else:  # typed contents go element by element through numpy: off the event loop
            body, json_length = await asyncio.to_thread(infer_request_to_body, request)
        metadata = context.invocation_metadata() or ()  # for a split that reads them; not copied
        resp = await self._service.infer(
            EncodedRequest(request.model_name, version, body, json_length, rid, span, None, metadata)
        )
        context.set_trailing_metadata(((REQUEST_ID, resp.request_id), (trace.HEADER, span)))
        return body_to_infer_response(
            resp.body,
            resp.json_length,
            model_name=request.model_name,
            model_version=resp.model_version,
            request_id=resp.request_id,
        )


def _build(
    service: InferenceService, max_message_bytes: int, recorder: RequestRecorder | None = None
) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),  # a port in use must fail, not be silently shared
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(_Servicer(service, recorder), server)  # type: ignore[no-untyped-call]
    return server


def _bind(
    server: grpc.aio.Server, host: str, port: int, credentials: grpc.ServerCredentials | None = None
) -> int:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:  # TLS only: a plaintext client's connection fails its handshake and is closed
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as e:
        raise Unavailable(f"cannot listen for gRPC on {address}: {e}") from None
    if not bound:
        raise Unavailable(f"cannot listen for gRPC on {address}")
    return int(bound)


def create_grpc_server(
    service: InferenceService, *, host: str, port: int, max_message_bytes: int
) -> grpc.aio.Server:
    """A grpc.aio server for ``service``, bound to host:port, not started; call it inside the running loop.

    ``max_message_bytes`` caps requests and responses (gRPC answers RESOURCE_EXHAUSTED beyond it).
    Use ``start_grpc_server`` to learn the port chosen for port 0.
    """
    server = _build(service, max_message_bytes)
    _bind(server, host, port)
    return server


@dataclass(frozen=True, slots=True)
class RunningGrpcServer:
    server: grpc.aio.Server
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` as gRPC clients take it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls, let those in flight finish for up to ``grace_s``, then cancel the rest."""
        await self.server.stop(grace_s)


async def start_grpc_server(
    service: InferenceService,
    *,
    host: str,
    port: int,
    max_message_bytes: int,
    credentials: grpc.ServerCredentials | None = None,
    recorder: RequestRecorder | None = None,
) -> RunningGrpcServer:
    """Create, bind and start the gRPC server in the running loop (port 0 picks a free port); with
    ``credentials`` (grpc.ssl_server_credentials) it serves TLS only; ``recorder`` counts its answers."""
    server = _build(service, max_message_bytes, recorder)
    bound = _bind(server, host, port, credentials)
    await server.start()
    return RunningGrpcServer(server, host, bound)
