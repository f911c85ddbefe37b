"""Dynamic batching in a real replica process over HTTP: no mix-ups, 429 and 504, then recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from conveyor.protocol.codec import decode_infer_response, encode_infer_request
from tests.fixtures import batching_models as bm
from tests.fixtures.replica import running_replica


@pytest.fixture(scope="module")
def url(logreg_onnx: Path, models_dir: Path) -> Iterator[str]:
    files = {"lr": logreg_onnx, "pool": bm.build_pool(models_dir / "pool-http.onnx")}
    with running_replica(files, "--max-batch-size", "16") as base:
        yield base


@pytest.fixture(scope="module")
def slow_url(models_dir: Path) -> Iterator[str]:
    slow = bm.build_slow(models_dir / "slow-http.onnx", k=8)
    args = ("--max-batch-size", "1", "--max-queue-size", "1", "--request-timeout-ms", "500")
    with running_replica({"slow": slow}, *args) as base:
        yield base


async def _post_all(url: str, bodies: list[tuple[bytes, int | None]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def post(body: bytes, json_len: int | None) -> httpx.Response:
            headers = {} if json_len is None else {"inference-header-content-length": str(json_len)}
            return await client.post(url, content=body, headers=headers)

        return await asyncio.gather(*(post(b, n) for b, n in bodies))


def test_64_concurrent_requests_over_http_each_get_their_own_answer(url: str, logreg_onnx: Path) -> None:
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(1 + i % 2, 4)).astype(np.float32) for i in range(64)]
    bodies = [encode_infer_request({"input": x}, id=f"q{i}", binary=i % 3 == 0) for i, x in enumerate(xs)]
    responses = asyncio.run(_post_all(f"{url}/v2/models/lr/infer", bodies))
    sess = ort.InferenceSession(str(logreg_onnx), providers=["CPUExecutionProvider"])
    for i, (x, r) in enumerate(zip(xs, responses, strict=True)):
        assert r.status_code == 200, r.text
        header = r.headers.get("inference-header-content-length")
        got = decode_infer_response(r.content, None if header is None else int(header))
        assert got.id == f"q{i}"
        label, proba = sess.run(None, {"input": x})
        np.testing.assert_array_equal(got.as_dict()["label"], label)
        np.testing.assert_allclose(got.as_dict()["probabilities"], proba, rtol=1e-6)


def test_mixed_image_sizes_and_one_bad_request_over_http(url: str) -> None:
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(1, 3, 4 + 4 * (i % 2), 6)).astype(np.float32) for i in range(32)]
    bodies = [encode_infer_request({"x": x}) for x in xs]
    bodies[7] = encode_infer_request({"x": np.zeros((1, 2, 4, 6), np.float32)})  # 2 channels, not 3
    responses = asyncio.run(_post_all(f"{url}/v2/models/pool/infer", bodies))
    for i, (x, r) in enumerate(zip(xs, responses, strict=True)):
        if i == 7:
            assert r.status_code == 400 and "'x'" in r.json()["error"]
            continue
        assert r.status_code == 200, r.text
        got = decode_infer_response(r.content, None).as_dict()["mean"]
        np.testing.assert_allclose(got, x.mean(axis=(2, 3)), atol=1e-6)


def test_a_full_queue_gets_429_with_retry_after_and_the_server_recovers(slow_url: str) -> None:
    body = encode_infer_request({"x": np.ones((1, 1), np.float32)})
    responses = asyncio.run(_post_all(f"{slow_url}/v2/models/slow/infer", [body] * 12))
    codes = [r.status_code for r in responses]
    refused = [r for r in responses if r.status_code == 429]
    assert refused and set(codes) <= {200, 429, 504}, codes
    assert refused[0].headers["retry-after"] and "max_queue_size" in refused[0].json()["error"]
    after = httpx.post(f"{slow_url}/v2/models/slow/infer", content=body[0], timeout=30)
    assert after.status_code == 200 and decode_infer_response(after.content, None).as_dict()["y"].shape == (
        1,
    )


def test_a_request_past_its_timeout_gets_504(slow_url: str) -> None:
    body, _ = encode_infer_request({"x": np.ones((64, 1), np.float32)})  # about 3x the 500 ms
    r = httpx.post(f"{slow_url}/v2/models/slow/infer", content=body, timeout=30)
    assert r.status_code == 504 and "500 ms" in r.json()["error"]
