"""`conveyor serve` with a small queue and far more clients than the model can serve: refusals are 429s
with Retry-After and a JSON message, never a 5xx; what is let in is answered correctly; clients that honour
Retry-After all get served; the server answers at once when the load is gone. (The throughput this keeps is
measured by `make bench`, bench/overload.py: performance is not a timed test.)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from tests.fixtures.batching_models import build_slow
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok

pytestmark = pytest.mark.timeout(180)
HAMMER_S = 2.0
POLITE_DEADLINE_S = 60.0


def _body(value: float) -> bytes:
    return orjson.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [value]}]})


async def _hammer(client: httpx.AsyncClient, url: str, until: float) -> list[httpx.Response]:
    """A client that ignores Retry-After: sends again as soon as it is answered."""
    seen = []
    while time.monotonic() < until:
        seen.append(await client.post(url, content=_body(0.5), headers={"content-type": "application/json"}))
    return seen


async def _polite(url: str, requests: int, value: float) -> list[tuple[int, float]]:
    """A client that waits out Retry-After after each 429; (status, y) of each request it got answered."""
    answered = []
    deadline = time.monotonic() + POLITE_DEADLINE_S
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(requests):
            while True:
                r = await client.post(url, content=_body(value), headers={"content-type": "application/json"})
                if r.status_code != 429:
                    answered.append((r.status_code, r.json()["outputs"][0]["data"][0]))
                    break
                assert time.monotonic() < deadline, "a client honouring Retry-After was never served"
                await asyncio.sleep(float(r.headers["retry-after"]))
    return answered


def test_a_small_queue_refuses_cleanly_serves_polite_clients_and_recovers(
    tmp_path: Path, cli_env: dict[str, str], processes: ProcessGroup
) -> None:
    model = build_slow(tmp_path / "slow.onnx", k=2)  # tens of ms a run: the model is the limit
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [conveyor_exe(), "serve", str(model), "--port", str(port), "--max-queue-size", "2"]
    proc = processes.start([*argv, "--max-batch-size", "1"], env=cli_env)
    wait_http_ok(f"{base}/v2/models/slow/ready", proc)
    url = f"{base}/v2/models/slow/infer"
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def expected(value: float) -> float:
        return float(sess.run(None, {"x": np.full((1, 1), value, np.float32)})[0][0])

    async def hammer() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=24)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            until = time.monotonic() + HAMMER_S
            runs = await asyncio.gather(*(_hammer(client, url, until) for _ in range(24)))
        return [r for run in runs for r in run]

    hammered = asyncio.run(hammer())
    codes = {r.status_code for r in hammered}
    assert codes == {200, 429}, codes  # some answered, the rest refused: nothing else, no 5xx
    for r in hammered:
        if r.status_code == 429:
            assert r.headers["retry-after"] == "1"
            assert "retry later" in r.json()["error"]
        else:
            assert r.json()["outputs"][0]["data"][0] == pytest.approx(expected(0.5), rel=1e-5)

    async def polite() -> list[list[tuple[int, float]]]:
        return await asyncio.gather(*(_polite(url, 2, 0.1 * (i + 1)) for i in range(8)))

    for i, answered in enumerate(asyncio.run(polite())):
        assert [code for code, _ in answered] == [200, 200]
        assert all(y == pytest.approx(expected(0.1 * (i + 1)), rel=1e-5) for _, y in answered)

    started = time.monotonic()
    r = httpx.post(url, content=_body(0.5), headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 200 and time.monotonic() - started < 5  # recovered: no backlog left behind
