"""A gateway in this process over real replica processes on the framed channel (Unix sockets).

Retry once on another replica when one dies, ejection of a hung replica and its return, and answers equal to
ONNX Runtime's for JSON and binary bodies.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conveyor.errors import DeadlineExceeded
from conveyor.gateway import Gateway, OutlierState, Replica, Route, RoutingTable
from conveyor.gateway.channel import ChannelUpstream
from conveyor.protocol.codec import decode_infer_response, encode_infer_request
from conveyor.protocol.service import EncodedRequest
from tests.fixtures.processes import ProcessGroup
from tests.fixtures.replica import start_channel_replica


@pytest.fixture
def replicas(processes: ProcessGroup, logreg_onnx: Path, tmp_path: Path) -> Iterator[list[Path]]:
    socks = [tmp_path / f"r{i}.sock" for i in range(2)]
    for s in socks:
        start_channel_replica(processes, "lr:1", logreg_onnx, s)
    yield socks


def _gateway(socks: list[Path]) -> Gateway:
    members = [
        Replica(ChannelUpstream(f"unix:{s}", probe_timeout_s=0.2), OutlierState(3), name=f"r{i}")
        for i, s in enumerate(socks)
    ]
    return Gateway(RoutingTable([Route("lr", "1", members)]), health_interval_s=0.1, rng=random.Random(0))


def _request(x: np.ndarray, binary: bool, rid: str) -> EncodedRequest:
    body, json_length = encode_infer_request(
        {"input": x}, binary=binary, outputs=["label", "probabilities"], binary_outputs=binary
    )
    return EncodedRequest("lr", None, body, json_length, rid)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_answers_equal_onnxruntime(replicas: list[Path], logreg_onnx: Path, binary: bool) -> None:
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)

    async def run() -> tuple[bytes, int | None, str, str | None]:
        gw = _gateway(replicas)
        await gw.start()
        try:
            r = await gw.infer(_request(x, binary, "req-42"))
            return r.body, r.json_length, r.request_id, r.model_version
        finally:
            await gw.stop()

    body, json_length, rid, version = asyncio.run(run())
    assert rid == "req-42" and version == "1" and (json_length is not None) == binary
    got = {o.name: o.data for o in decode_infer_response(body, json_length).outputs}
    sess = ort.InferenceSession(str(logreg_onnx), providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {"input": x})
    np.testing.assert_array_equal(got["label"], label)
    np.testing.assert_allclose(got["probabilities"], proba, rtol=1e-6)


def test_a_killed_replica_costs_no_request_and_is_ejected(
    replicas: list[Path], processes: ProcessGroup
) -> None:
    x = np.ones((1, 4), np.float32)

    async def run() -> tuple[list[bool], bool]:
        gw = _gateway(replicas)
        await gw.start()
        try:
            await asyncio.gather(*(gw.infer(_request(x, True, str(i))) for i in range(20)))  # connections up
            os.kill(processes.procs[0].pid, signal.SIGKILL)
            processes.procs[0].wait()
            results = await asyncio.gather(
                *(gw.infer(_request(x, True, str(i))) for i in range(200)), return_exceptions=True
            )
            return [not isinstance(r, BaseException) for r in results], gw.replicas[0].admitted
        finally:
            await gw.stop()

    ok, admitted = asyncio.run(run())
    assert all(ok) and not admitted


def test_a_hung_replica_is_ejected_and_comes_back_when_its_probe_passes(
    replicas: list[Path], processes: ProcessGroup
) -> None:
    hung = processes.procs[1]

    async def wait_for(gw: Gateway, admitted: bool) -> float:
        t0 = time.monotonic()
        while gw.replicas[1].admitted is not admitted:
            assert time.monotonic() - t0 < 5, f"replica never became admitted={admitted}"
            await asyncio.sleep(0.02)
        return time.monotonic() - t0

    async def run() -> None:
        gw = _gateway(replicas)
        await gw.start()
        try:
            assert gw.replicas[1].admitted
            hung.send_signal(signal.SIGSTOP)
            await wait_for(gw, False)
            x = np.ones((1, 4), np.float32)
            # Ejected: every request goes to the other replica and none waits on the hung one.
            await asyncio.wait_for(asyncio.gather(*(gw.infer(_request(x, True, "r")) for _ in range(50))), 5)
            hung.send_signal(signal.SIGCONT)
            await wait_for(gw, True)
        finally:
            hung.send_signal(signal.SIGCONT)
            await gw.stop()

    asyncio.run(run())


def test_a_request_to_a_hung_replica_fails_at_the_deadline_instead_of_waiting_forever(
    replicas: list[Path], processes: ProcessGroup
) -> None:
    upstream = ChannelUpstream(f"unix:{replicas[0]}", request_timeout_s=0.3)
    x = np.ones((1, 4), np.float32)

    async def run() -> float:
        await upstream.infer(_request(x, True, "warm"))
        processes.procs[0].send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            with pytest.raises(DeadlineExceeded, match=r"did not answer within 0\.3s"):
                await upstream.infer(_request(x, True, "late"))
            return time.monotonic() - t0
        finally:
            processes.procs[0].send_signal(signal.SIGCONT)
            await upstream.close()

    assert asyncio.run(run()) < 2
