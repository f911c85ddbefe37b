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
    scheme, where, port = frames.parse_address(address)
    if scheme == "unix":
        reader, writer = await asyncio.open_unix_connection(where)
    else:
        reader, writer = await asyncio.open_connection(where, port)
    try:
        writer.writelines(frames.frame(1, frames.HEALTH))
        length, stream, kind = frames.HEADER.unpack(await reader.readexactly(frames.HEADER.size))
        payload = await reader.readexactly(length)
        return stream == 1 and kind == frames.OK and payload == b"1"
    except asyncio.IncompleteReadError:
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
