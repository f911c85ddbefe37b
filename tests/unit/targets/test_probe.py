"""The control plane's readiness probe never raises: a missing socket or a silent peer is a failed probe."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conveyor.targets.probe import probe


def test_no_socket_is_a_failed_probe(tmp_path: Path) -> None:
    assert asyncio.run(probe(f"unix:{tmp_path / 'none.sock'}")) is False


def test_a_peer_that_never_answers_times_out(tmp_path: Path) -> None:
    async def scenario() -> bool:
        server = await asyncio.start_unix_server(lambda r, w: None, str(tmp_path / "mute.sock"))
        async with server:
            return await probe(f"unix:{tmp_path / 'mute.sock'}", timeout_s=0.2)

    assert asyncio.run(scenario()) is False
