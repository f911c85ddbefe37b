"""Run the REST front end under uvicorn (uvloop + httptools), with graceful shutdown on SIGINT / SIGTERM."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from types import FrameType

import uvicorn

from conveyor.runtime import OnnxModel
from conveyor.server.rest import create_app
from conveyor.settings import Settings, get_settings

GRACEFUL_SHUTDOWN_S = 30


class _Server(uvicorn.Server):
    """uvicorn's server, telling ``on_ready`` the URL once the socket listens."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[str], None] | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_ready is not None:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            host = f"[{host}]" if ":" in host else host
            self._on_ready(f"http://{host}:{port}")

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after a graceful stop; serve() returns instead, so the CLI and
        # supervisors see a clean exit (and no KeyboardInterrupt traceback on Ctrl-C).
        self._captured_signals.clear()


def serve(
    models: Sequence[OnnxModel],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    settings: Settings | None = None,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
    access_log: bool = False,
) -> None:
    """Serve ``models`` until SIGINT / SIGTERM, then return once in-flight requests have finished."""
    app = create_app(models, settings or get_settings())
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=access_log,
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
    )
    _Server(config, on_ready).run()
