"""The replica side of the internal channel: serves an InferenceService over length-prefixed frames.

Each connection carries many requests at once; SIGTERM stops accepting, finishes in-flight work, then exits.
A replica also stops when its supervisor is gone: ``--parent-pid`` (``conveyor serve``) or a stale lease
file (replicas of the control plane, which outlive a control-plane restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import cast

import orjson
import uvloop

from conveyor import processes
from conveyor.errors import ConveyorError
from conveyor.frontend.gc_tuning import freeze_startup_heap
from conveyor.frontend.http_errors import status_for
from conveyor.observe import trace
from conveyor.observe.collectors import render
from conveyor.observe.recorder import RequestRecorder, recorder_for
from conveyor.protocol import frames
from conveyor.protocol.service import EncodedRequest, EncodedResponse, InferenceService
from conveyor.runtime import OnnxModel
from conveyor.server.dataplane import DataPlane
from conveyor.settings import Settings

log = logging.getLogger("conveyor.server.channel")


class _Connection(asyncio.Protocol):
    """One gateway connection. A lone INFER frame (the only one of its read, with nothing in flight in this
    replica) for a fast model is answered in ``data_received`` itself (``DataPlane.infer_now``): no task and
    no loop pass looking for requests to batch it with; everything else gets a task."""

    def __init__(
        self,
        service: InferenceService,
        inflight: set[asyncio.Task[None]],
        recorder: RequestRecorder | None = None,
    ) -> None:
        self._service = service
        self._recorder = recorder
        self._infer_now = service.infer_now if isinstance(service, DataPlane) else None
        self._inflight = inflight
        self._reader = frames.FrameReader()
        self._transport: asyncio.Transport | None = None
        self._outbox: frames.Outbox | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self._outbox = frames.Outbox(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._outbox is not None:
            self._outbox.discard()

    def data_received(self, data: bytes) -> None:
        try:
            received = self._reader.feed(data)
        except ValueError:
            log.warning("closing a channel connection that sent a malformed frame")
            if self._transport is not None:
                self._transport.close()
            return
        lone = len(received) == 1 and not self._inflight
        for stream, kind, payload in received:
            if kind == frames.PING:  # answered here, ahead of any work: the gateway's proof of life
                if self._outbox is not None:
                    self._outbox.put(frames.frame(stream, frames.PONG))
                continue
            if lone and kind == frames.INFER and (out := self._answer_now(stream, payload)) is not None:
                if self._outbox is not None:
                    self._outbox.put(out)
                continue
            task = asyncio.get_running_loop().create_task(self._handle(stream, kind, payload))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    def _answer_now(self, stream: int, payload: bytes) -> list[bytes] | None:
        """The answer frame of a lone INFER, or None: it needs the regular (awaited) path."""
        if self._infer_now is None:
            return None
        started = perf_counter()
        try:
            request = _infer_request(payload)
        except Exception as exc:
            return _error_frame(stream, exc)
        try:
            resp = self._infer_now(request)
        except Exception as exc:
            self._record(request, None, exc, started)
            return _error_frame(stream, exc)
        if resp is None:
            return None
        self._record(request, resp, None, started)
        return frames.frame(stream, frames.OK, *_infer_reply(resp))

    async def _handle(self, stream: int, kind: int, payload: bytes) -> None:
        try:
            if kind == frames.INFER:
                parts = await self._infer(payload)
            else:
                parts = await self._answer(kind, payload)
            out = frames.frame(stream, frames.OK, *parts)
        except Exception as exc:
            out = _error_frame(stream, exc)
        if self._outbox is not None:
            self._outbox.put(out)  # answers finished in the same turn leave in one write

    async def _infer(self, payload: bytes) -> tuple[bytes, ...]:
        started = perf_counter()
        request = _infer_request(payload)
        try:
            resp = await self._service.infer(request)
        except Exception as exc:
            self._record(request, None, exc, started)
            raise
        self._record(request, resp, None, started)
        return _infer_reply(resp)

    def _record(
        self, request: EncodedRequest, resp: EncodedResponse | None, exc: Exception | None, started: float
    ) -> None:
        """Count the answer (protocol "channel"): the gateway counts the same request as its client saw it."""
        recorder = self._recorder
        if recorder is None:
            return
        if resp is not None:
            status: int = 200
            version = resp.model_version
        else:
            status = status_for(exc) if isinstance(exc, ConveyorError) else 500
            version = _version_of(self._service, request.model, request.version)
        elapsed = perf_counter() - started
        rid, span = request.request_id, request.traceparent
        recorder.record(request.model, version, status, elapsed, rid, span, request.parent)

    async def _answer(self, kind: int, payload: bytes) -> tuple[bytes, ...]:
        svc = self._service
        if kind == frames.HEALTH:
            return (b"1" if svc.ready() else b"0",)
        if kind == frames.METRICS:
            return (render(),)
        call = frames.decode_call(payload)
        if kind == frames.METADATA:
            return (orjson.dumps(await svc.model_metadata(call.model, call.version)),)
        if kind == frames.MODEL_READY:
            return (orjson.dumps(await svc.model_ready(call.model, call.version)),)
        raise ConveyorError(f"unknown channel request kind {kind}")


def _version_of(service: InferenceService, model: str, version: str | None) -> str | None:
    """The version a failed request was for, as the replica serves it (the default's, when none asked)."""
    if isinstance(service, DataPlane):
        with contextlib.suppress(ConveyorError):
            return service.model(model, version).version
    return version


def _infer_request(payload: bytes) -> EncodedRequest:
    call = frames.decode_call(payload)
    # The replica's own span in the gateway's trace; rate 0: the gateway decided the sampling for both.
    span = trace.span(call.traceparent, 0.0)
    # The gateway's span stays as this span's parent (the OTLP export's, observe/otlp.py).
    return EncodedRequest(
        call.model, call.version, call.body, call.json_length, call.request_id, span, call.traceparent
    )


def _infer_reply(resp: EncodedResponse) -> tuple[bytes, bytes]:
    return frames.encode_reply(resp.json_length, resp.request_id, resp.model_version), resp.body


def _error_frame(stream: int, exc: Exception) -> list[bytes]:
    if not isinstance(exc, ConveyorError):  # a bug must not take the connection (and its other requests) down
        log.error("channel request failed", exc_info=exc)
        exc = ConveyorError(f"internal error: {type(exc).__name__}")
    return frames.frame(stream, frames.ERROR, frames.encode_error(exc))


async def serve_channel(
    service: InferenceService,
    address: str,
    *,
    on_ready: Callable[[str], None] | None = None,
    parent_pid: int | None = None,
    lease: Lease | None = None,
    recorder: RequestRecorder | None = None,
) -> None:
    """Serve until SIGINT / SIGTERM (or the parent or the lease is gone), then drain in-flight requests;
    ``recorder`` counts the inference requests answered."""
    loop = asyncio.get_running_loop()
    inflight: set[asyncio.Task[None]] = set()
    scheme, where, port = frames.parse_address(address)
    if scheme == "unix":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where)  # a socket left by a crashed predecessor in this slot
        server = await loop.create_unix_server(lambda: _Connection(service, inflight, recorder), where)
    else:
        server = await loop.create_server(lambda: _Connection(service, inflight, recorder), where, port)
        address = "tcp:{}:{}".format(*server.sockets[0].getsockname()[:2])
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watchdogs = [loop.create_task(_watch_parent(parent_pid, stop))] if parent_pid else []
    if lease is not None:
        watchdogs.append(loop.create_task(_watch_lease(lease, stop)))
    if on_ready is not None:
        on_ready(address)
    await stop.wait()
    server.close()  # stop accepting; open connections keep delivering replies until drained
    while inflight:  # requests still arriving on open connections join the drain
        await asyncio.wait(set(inflight))
    for task in watchdogs:
        task.cancel()
    if scheme == "unix":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where)


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGTERM this process when its parent dies; exit now if the parent is already gone."""
    processes.die_with_parent()
    if os.getppid() != parent_pid:
        raise SystemExit(f"parent process {parent_pid} is gone")


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    # Backstop for PR_SET_PDEATHSIG (Linux only, and racy at startup): a re-parented replica exits.
    while os.getppid() == parent_pid:
        await asyncio.sleep(1.0)
    log.warning("parent process %d is gone: stopping", parent_pid)
    stop.set()


@dataclass(frozen=True, slots=True)
class Lease:
    """A file its owner (the control plane) touches every second; stale for ``orphan_after_s``: exit."""

    path: Path
    orphan_after_s: float


async def _watch_lease(lease: Lease, stop: asyncio.Event) -> None:
    # The control plane may be down for a restart (it adopts running replicas): only a lease left
    # unrefreshed for orphan_after_s means nobody will come back for this replica.
    while True:
        await asyncio.sleep(min(1.0, lease.orphan_after_s / 4))
        try:
            age = time.time() - lease.path.stat().st_mtime
        except OSError:
            age = float("inf")
        if age > lease.orphan_after_s:
            log.warning("control plane lease %s not refreshed for %.0fs: stopping", lease.path, age)
            stop.set()
            return


def run_channel_replica(
    models: Sequence[OnnxModel],
    settings: Settings,
    address: str,
    *,
    on_ready: Callable[[str], None] | None = None,
    parent_pid: int | None = None,
    lease: Lease | None = None,
) -> None:
    """Serve ``models`` on the channel only (no HTTP port) until signalled: the launcher's ``--channel``."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    plane = DataPlane.from_settings(models, settings)
    # No access log draw here: the gateway decided where the request entered (its traceparent's flag).
    recorder = recorder_for("channel", settings, draw=False)

    async def main() -> None:
        async with plane:
            await serve_channel(
                plane, address, on_ready=on_ready, parent_pid=parent_pid, lease=lease, recorder=recorder
            )

    freeze_startup_heap()
    uvloop.run(main())
