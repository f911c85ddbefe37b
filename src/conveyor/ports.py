"""Checking a listening address before a server starts, so a port in use is one clear error line."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from conveyor.errors import Unavailable


def check_port_free(host: str, port: int, flag: str) -> None:
    """Unavailable naming the option when ``host:port`` cannot be bound (before any child starts)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise Unavailable(f"cannot listen on {host}:{port} ({flag}): {exc.strerror or exc}") from None


def check_ports_free(host: str, ports: Mapping[str, int | None]) -> None:
    """``check_port_free`` for each ``{flag: port}``; None and 0 (any free port) are skipped."""
    for flag, port in ports.items():
        if port:
            check_port_free(host, port, flag)
