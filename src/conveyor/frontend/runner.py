"""Run the REST front end under uvicorn (uvloop + httptools), and gRPC in the same loop when asked for.

Both stop gracefully on SIGINT / SIGTERM.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette

from conveyor.errors import Unavailable
from conveyor.frontend.bodies import BodyReader
from conveyor.frontend.connections import connection_protocol
from conveyor.frontend.gc_tuning import freeze_startup_heap
from conveyor.frontend.grpc import RunningGrpcServer, start_grpc_server
from conveyor.frontend.hot_path import hot_protocol
from conveyor.frontend.uvicorn_server import AnnouncingServer, tls_config
from conveyor.observe.recorder import recorder_for
from conveyor.protocol.service import InferenceService
from conveyor.settings import Settings

if TYPE_CHECKING:
    from conveyor.security.tls import ServerTls

GRACEFUL_SHUTDOWN_S = 30
log = logging.getLogger("conveyor.frontend")


class UvicornServer(AnnouncingServer):
    """The announcing uvicorn server, with the V2 gRPC front end started in its loop when asked for."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_ready: Callable[[str], None] | None,
        start_grpc: Callable[[], Awaitable[RunningGrpcServer]] | None = None,
        on_grpc_ready: Callable[[str], None] | None = None,
        bodies: BodyReader | None = None,
    ) -> None:
        super().__init__(config, on_ready)
        self._bodies = bodies
        self._start_grpc = start_grpc
        self._on_grpc_ready = on_grpc_ready
        self.grpc: RunningGrpcServer | None = None

    async def after_startup(self) -> bool:
        if self._start_grpc is None:
            return True
        # After the app's lifespan startup, so gRPC never serves a plane that is not started yet.
        try:
            self.grpc = await self._start_grpc()
        except Unavailable as e:
            log.error("%s", e)
            self.failed = self.should_exit = True  # uvicorn then shuts REST down gracefully
            return False
        if self._on_grpc_ready is not None:
            self._on_grpc_ready(self.grpc.address)
        return True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._bodies is not None:  # a stalled upload gets its 503 now, not a 500 when the grace runs out
            self._bodies.close()
        if self.grpc is not None:  # drain gRPC first: the REST lifespan shutdown closes the shared plane
            await self.grpc.stop(GRACEFUL_SHUTDOWN_S)
        await super().shutdown(sockets)


def run_app(
    app: Starlette,
    service: InferenceService,
    *,
    host: str,
    port: int,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
    access_log: bool = False,
    grpc_port: int | None = None,
    on_grpc_ready: Callable[[str], None] | None = None,
    max_message_bytes: int = 64 * 1024 * 1024,
    tls: ServerTls | None = None,
) -> UvicornServer:
    """Serve ``app`` (and gRPC over ``service`` when ``grpc_port`` is set) until signalled; the finished
    server tells whether it started and whether gRPC failed. With ``tls`` both serve TLS only (https://,
    gRPC over TLS).

    ``app`` is a V2 REST app (server.app.create_app or gateway.app.create_gateway_app): its state holds the
    settings and the body reader, which shutdown closes.
    """
    settings: Settings = app.state.settings
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        # V2 inference without the ASGI layers; at most max_connections_per_client per client address
        http=connection_protocol(hot_protocol(service, app.state.bodies, app.state.recorder), settings),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        lifespan="on",
        access_log=access_log,
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through the process's handler (observe/logs.py)
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
        **tls_config(tls),
    )
    start_grpc = None
    if grpc_port is not None:

        async def start_grpc() -> RunningGrpcServer:
            credentials = None if tls is None else tls.grpc_credentials()
            return await start_grpc_server(
                service,
                host=host,
                port=grpc_port,
                max_message_bytes=max_message_bytes,
                credentials=credentials,
                recorder=recorder_for("grpc", settings),
            )

    server = UvicornServer(config, on_ready, start_grpc, on_grpc_ready, app.state.bodies)
    freeze_startup_heap()
    server.run()
    return server
