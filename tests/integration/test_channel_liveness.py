"""The channel's liveness check against real replica processes stopped with SIGSTOP.

A replica that stops answering (its process stopped, its event loop wedged) while requests are in flight is
found by a ping, not by a per-request deadline: a long inference is not a hung replica, because the replica's
event loop answers the ping while ONNX Runtime works in a thread.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import numpy as np

from conveyor.gateway import Gateway, OutlierState, Replica, Route, RoutingTable
from conveyor.gateway.channel import ChannelUpstream
from conveyor.gateway.upstream import ConnectionFailed
from conveyor.protocol.codec import encode_infer_request
from conveyor.protocol.service import EncodedRequest
from conveyor.settings import Settings
from tests.fixtures.batching_models import build_slow
from tests.fixtures.processes import ProcessGroup
from tests.fixtures.replica import start_channel_replica

SETTINGS = Settings()
# What a request to a hung replica may take: the liveness window (ping after idle, then the pong timeout),
# plus margin for a loaded 2-core machine.
WINDOW_S = (SETTINGS.channel_ping_after_ms + SETTINGS.channel_pong_timeout_ms) / 1000
BOUND_S = WINDOW_S + 1.0


def _lr(rid: str) -> EncodedRequest:
    body, json_length = encode_infer_request({"input": np.ones((1, 4), np.float32)}, binary=True)
    return EncodedRequest("lr", None, body, json_length, rid)


def test_a_stopped_replica_fails_its_in_flight_requests_as_retryable_within_the_liveness_window(
    processes: ProcessGroup, logreg_onnx: Path, tmp_path: Path
) -> None:
    proc = start_channel_replica(processes, "lr:1", logreg_onnx, tmp_path / "r.sock")
    upstream = ChannelUpstream.for_settings(f"unix:{tmp_path / 'r.sock'}", SETTINGS)

    async def run() -> list[tuple[BaseException | None, float]]:
        await upstream.infer(_lr("warm"))  # connections up

        async def timed(rid: str) -> tuple[BaseException | None, float]:
            t0 = time.monotonic()
            try:
                await upstream.infer(_lr(rid))
            except Exception as exc:
                return exc, time.monotonic() - t0
            return None, time.monotonic() - t0

        proc.send_signal(signal.SIGSTOP)
        try:
            # A plain wait would be the request timeout (30 s): far past this test's own deadline.
            return await asyncio.wait_for(asyncio.gather(*(timed(str(i)) for i in range(8))), BOUND_S + 5)
        finally:
            proc.send_signal(signal.SIGCONT)
            await upstream.close()

    results = asyncio.run(run())
    for exc, took in results:
        assert isinstance(exc, ConnectionFailed), exc  # retryable: the gateway sends it to another replica
        assert "did not answer a ping" in str(exc)
        assert took < BOUND_S, f"a request to a stopped replica took {took:.2f}s (bound {BOUND_S:.2f}s)"


def test_an_inference_longer_than_the_liveness_window_is_answered(
    processes: ProcessGroup, tmp_path: Path
) -> None:
    model = build_slow(tmp_path / "slow.onnx", k=60)  # about 1 s on 2 idle cores: well past 0.5 s
    sock = tmp_path / "slow.sock"
    start_channel_replica(processes, "slow:1", model, sock)
    upstream = ChannelUpstream(f"unix:{sock}", ping_after_s=0.05, pong_timeout_s=0.2)
    body, json_length = encode_infer_request({"x": np.ones((16, 1), np.float32)}, binary=True)

    async def run() -> float:
        await upstream.infer(EncodedRequest("slow", None, body, json_length, "warm"))
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(
                upstream.infer(EncodedRequest("slow", None, body, json_length, "long")), 60
            )
        finally:
            await upstream.close()
        return time.monotonic() - t0

    took = asyncio.run(run())
    # Pings went out and came back while ONNX Runtime worked: a deadline this short would have failed it.
    assert took > 2 * (0.05 + 0.2), f"the inference took {took:.2f}s, too short to show anything"


def test_a_gateway_answers_every_request_sent_to_a_stopped_replica_from_the_other_one(
    processes: ProcessGroup, logreg_onnx: Path, tmp_path: Path
) -> None:
    socks = [tmp_path / f"r{i}.sock" for i in range(2)]
    procs = [start_channel_replica(processes, "lr:1", logreg_onnx, s) for s in socks]
    # Probes far apart: the failover below is the channel's doing, not the health checks'.
    members = [
        Replica(ChannelUpstream.for_settings(f"unix:{s}", SETTINGS), OutlierState(3), name=f"r{i}")
        for i, s in enumerate(socks)
    ]
    gw = Gateway(RoutingTable([Route("lr", "1", members)]), health_interval_s=30, rng=random.Random(0))

    async def run() -> tuple[list[float], bool]:
        await gw.start()
        try:
            await asyncio.gather(*(gw.infer(_lr(str(i))) for i in range(20)))

            async def timed(rid: str) -> float:
                t0 = time.monotonic()
                await gw.infer(_lr(rid))
                return time.monotonic() - t0

            procs[1].send_signal(signal.SIGSTOP)
            try:
                took = await asyncio.wait_for(
                    asyncio.gather(*(timed(str(i)) for i in range(64))), BOUND_S + 5
                )
            finally:
                procs[1].send_signal(signal.SIGCONT)
            return took, gw.replicas[1].admitted
        finally:
            await gw.stop()

    took, admitted = asyncio.run(run())
    assert max(took) < BOUND_S, f"slowest {max(took):.2f}s (bound {BOUND_S:.2f}s)"
    assert not admitted  # ejected at once: a connection that missed its pong says the replica is hung
