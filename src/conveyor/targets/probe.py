"""A readiness probe of a replica's channel: one HEALTH frame on a short-lived connection.

What the control plane uses to decide a replica may be routed to (gateways keep their own persistent
connections and probes, gateway/channel.py); a probe that cannot connect, times out or reads anything but a
ready answer counts as failed, and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib

from conveyor.protocol import frames


async def probe(address: str, timeout_s: float = 2.0) -> bool:
    try:
        return await asyncio.wait_for(_ask(address), timeout_s)
    except (OSError, TimeoutError, ValueError):
        return False


async def _ask(address: str) -> bool:
    try:
        stream, kind, payload = await exchange(address, frames.HEALTH)
    except asyncio.IncompleteReadError:
        return False
    return stream == 1 and kind == frames.OK and payload == b"1"


async def exchange(address: str, kind: int) -> tuple[int, int, bytes]:
    """Send one payload-less frame of ``kind`` (stream 1) on a new connection; its answer's stream, kind
    and payload. The caller bounds the time it may take."""
    scheme, where, port = frames.parse_address(address)
    if scheme == "unix":
        reader, writer = await asyncio.open_unix_connection(where)
    else:
        reader, writer = await asyncio.open_connection(where, port)
    try:
        writer.writelines(frames.frame(1, kind))
        length, stream, answer = frames.HEADER.unpack(await reader.readexactly(frames.HEADER.size))
        return stream, answer, await reader.readexactly(length)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
