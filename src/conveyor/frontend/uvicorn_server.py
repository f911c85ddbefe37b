"""uvicorn's server as every Conveyor process runs it: it announces its URL once listening and returns,
rather than re-raising the signal, after a graceful stop on SIGINT / SIGTERM.

Replicas and gateways (frontend/runner.py adds gRPC) and the control plane (control/server.py) share it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

if TYPE_CHECKING:
    from conveyor.security.tls import ServerTls


def tls_config(tls: ServerTls | None) -> dict[str, Any]:
    """uvicorn.Config arguments that serve TLS with ``tls`` (nothing when None). Plain HTTP sent to such a
    port fails its TLS handshake: the connection is closed, the server logs nothing and keeps serving."""
    if tls is None:
        return {}
    return {
        "ssl_certfile": tls.cert_file,  # marks the config as TLS (https in the ASGI scope)
        "ssl_keyfile": tls.key_file,
        "ssl_context_factory": lambda config, default: tls.ssl_context(),
    }


class AnnouncingServer(uvicorn.Server):
    """``on_ready`` gets ``http://HOST:PORT`` (``https://`` when serving TLS) once the socket listens and
    ``after_startup`` succeeded."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[str], None] | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self.failed = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and await self.after_startup() and self._on_ready is not None:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            host = f"[{host}]" if ":" in host else host
            scheme = "https" if self.config.is_ssl else "http"
            self._on_ready(f"{scheme}://{host}:{port}")

    async def after_startup(self) -> bool:
        """What starts after the app's lifespan startup; False (and ``failed`` set) when it could not."""
        return True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after a graceful stop; returning instead lets the CLI and supervisors
        # see a clean exit (and no KeyboardInterrupt traceback on Ctrl-C).
        self._captured_signals.clear()
