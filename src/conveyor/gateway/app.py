"""Serve a Gateway with the replica's own V2 REST front end (and gRPC when asked), under uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from conveyor.errors import ConveyorError, Unavailable
from conveyor.frontend.rest import create_rest_app
from conveyor.frontend.runner import run_app
from conveyor.gateway.gateway import Gateway
from conveyor.security.tokens import Verifier
from conveyor.settings import Settings

if TYPE_CHECKING:
    from conveyor.security.tls import ServerTls

Hook = Callable[[], Awaitable[None]]
READY_TIMEOUT_S = 120.0


def create_gateway_app(
    gateway: Gateway,
    settings: Settings,
    *,
    startup: Hook | None = None,
    shutdown: Hook | None = None,
    wait_ready: bool = True,
) -> Starlette:
    """The V2 REST app over ``gateway``; ``startup`` runs before the port opens, and so does the wait for
    every replica to get ready unless ``wait_ready`` is False (the control plane's table may be empty)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            if startup is not None:
                await startup()
            await gateway.start()
            if wait_ready and not await gateway.wait_ready(READY_TIMEOUT_S):
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

    def metrics_guard(authorization: str | None) -> None:
        # A viewer (or higher) token, as the control plane's /metrics asks; none when the gateway asks no
        # token at all (conveyor serve on loopback) or metrics_public is set (docs/metrics.md).
        # With a token file (conveyor serve --token-file), any of its tokens: they carry no roles.
        if gateway.auth is not None and not settings.metrics_public:
            principal = gateway.auth.verifier.authenticate(authorization)
            if isinstance(gateway.auth.verifier, Verifier):
                principal.require("read")

    app = create_rest_app(gateway, settings, lifespan, metrics_guard)
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
    tls: ServerTls | None = None,
) -> None:
    """Serve until SIGINT / SIGTERM: stop accepting, finish in-flight requests, run shutdown, return.

    With ``grpc_port`` the V2 gRPC front end serves the same gateway in the same loop; with ``tls`` both
    serve TLS (https://, gRPC over TLS). A startup that failed
    (replicas never ready, a port in use) raises instead of returning quietly.
    """
    server = run_app(
        app,
        app.state.gateway,
        host=host,
        port=port,
        on_ready=on_ready,
        log_level=log_level,
        grpc_port=grpc_port,
        on_grpc_ready=on_grpc_ready,
        max_message_bytes=max_message_bytes,
        tls=tls,
    )
    error = getattr(app.state, "startup_error", None)
    if error is not None:
        raise error
    if server.failed or not server.started:
        raise Unavailable(f"could not start serving on {host}:{port} (see the log above)")
