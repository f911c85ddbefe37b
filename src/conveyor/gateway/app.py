"""Serve a Gateway with the replica's own V2 REST front end (and gRPC when asked), under uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette

from conveyor.errors import ConveyorError, Unavailable
from conveyor.gateway.gateway import Gateway
from conveyor.server import rest
from conveyor.server.gc_tuning import freeze_startup_heap
from conveyor.server.grpc import RunningGrpcServer, start_grpc_server
from conveyor.server.runner import GRACEFUL_SHUTDOWN_S, UvicornServer
from conveyor.settings import Settings

Hook = Callable[[], Awaitable[None]]
READY_TIMEOUT_S = 120.0


def create_gateway_app(
    gateway: Gateway, settings: Settings, *, startup: Hook | None = None, shutdown: Hook | None = None
) -> Starlette:
    """The V2 REST app over ``gateway``; ``startup`` runs, and replicas get ready, before the port opens."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            if startup is not None:
                await startup()
            await gateway.start()
            if not await gateway.wait_ready(READY_TIMEOUT_S):
                raise Unavailable(f"replicas not ready within {READY_TIMEOUT_S:.0f}s")
            yield
        except ConveyorError as exc:
            app.state.startup_error = exc  # serve_gateway raises it: uvicorn only logs a failed startup
            raise
        finally:
            # uvicorn calls this after in-flight requests finished: replicas can go now.
            await gateway.stop()
            if shutdown is not None:
                await shutdown()

    # The same routes and handlers as a replica's app, so requests and errors look the same.
    app = Starlette(
        routes=rest.create_routes(gateway, settings),
        exception_handlers=rest.exception_handlers(),
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app


def serve_gateway(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
    grpc_port: int | None = None,
    on_grpc_ready: Callable[[str], None] | None = None,
    max_message_bytes: int = 64 * 1024 * 1024,
) -> None:
    """Serve until SIGINT / SIGTERM: stop accepting, finish in-flight requests, run shutdown, return.

    With ``grpc_port`` the V2 gRPC front end serves the same gateway in the same loop. A startup that failed
    (replicas never ready, a port in use) raises instead of returning quietly.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
    )
    start_grpc = None
    if grpc_port is not None:
        gateway = app.state.gateway

        async def start_grpc() -> RunningGrpcServer:
            return await start_grpc_server(
                gateway, host=host, port=grpc_port, max_message_bytes=max_message_bytes
            )

    server = UvicornServer(config, on_ready, start_grpc, on_grpc_ready)
    freeze_startup_heap()
    server.run()
    error = getattr(app.state, "startup_error", None)
    if error is not None:
        raise error
    if server.failed or not server.started:
        raise Unavailable(f"could not start serving on {host}:{port} (see the log above)")
