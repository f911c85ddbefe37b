"""A replica's V2 server: its REST app over a DataPlane of its models, and ``serve`` (REST and gRPC under
uvicorn) until signalled."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from conveyor.frontend.rest import create_rest_app
from conveyor.frontend.runner import run_app
from conveyor.settings import Settings, get_settings

if TYPE_CHECKING:
    from conveyor.runtime import OnnxModel


def create_app(models: Sequence[OnnxModel], settings: Settings) -> Starlette:
    """A Starlette app serving ``models`` over the V2 REST API; its lifespan is the DataPlane's."""
    from conveyor.server.dataplane import DataPlane

    plane = DataPlane.from_settings(models, settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with plane:
            yield

    app = create_rest_app(plane, settings, lifespan)
    app.state.dataplane = plane
    return app


def serve(
    models: Sequence[OnnxModel],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    settings: Settings | None = None,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
    access_log: bool = False,
    grpc_port: int | None = None,
    on_grpc_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``models`` until SIGINT / SIGTERM, then return once in-flight requests have finished.

    With ``grpc_port`` (0: any free port) the V2 gRPC service runs on ``host`` too, in the same event loop
    and over the same data plane; ``on_grpc_ready`` gets its ``host:port``. Exits with status 1 if either
    port cannot be bound.
    """
    settings = settings or get_settings()
    app = create_app(models, settings)
    server = run_app(
        app,
        app.state.dataplane,
        host=host,
        port=port,
        on_ready=on_ready,
        log_level=log_level,
        access_log=access_log,
        grpc_port=grpc_port,
        on_grpc_ready=on_grpc_ready,
        max_message_bytes=settings.max_body_bytes,
    )
    if server.failed:
        raise SystemExit(1)
