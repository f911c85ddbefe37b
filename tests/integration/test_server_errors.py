"""Bad input against a real replica: a 4xx and ``{"error": ...}`` naming the problem; still serving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fixtures.replica import running_replica

MAX_BODY = 64 * 1024
GOOD = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


@pytest.fixture(scope="module")
def url(logreg_onnx: Path, multi_input_onnx: Path) -> Iterator[str]:
    models = {"lr:1": logreg_onnx, "multi": multi_input_onnx}
    with running_replica(models, "--max-body-bytes", str(MAX_BODY), "--max-elements", "100000") as base:
        yield base


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=10) as c:
        yield c
    # Whatever the test sent, the replica still answers a good request correctly.
    r = httpx.post(f"{url}/v2/models/lr/infer", json=GOOD, timeout=10)
    assert r.status_code == 200 and r.json()["outputs"][1]["shape"] == [1, 3]


def _tensor(**fields: Any) -> dict[str, Any]:
    return {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4], **fields}


def _x_k(x: dict[str, Any] | None = None, k: dict[str, Any] | None = None) -> bytes:
    xs = {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3], **(x or {})}
    ks = {"name": "k", "datatype": "INT64", "shape": [1, 1], "data": [2], **(k or {})}
    return orjson.dumps({"inputs": [xs, ks]})


CASES = [
    ("lr", b'{"inputs": [', {}, 400, "malformed JSON"),
    ("lr", b"", {}, 400, "malformed JSON"),
    ("lr", orjson.dumps({"inputs": [_tensor(name="inp")]}), {}, 400, "unexpected input(s) 'inp'"),
    (
        "lr",
        orjson.dumps({"inputs": [_tensor(datatype="FP64")]}),
        {},
        400,
        "'input': expected datatype FP32, got FP64",
    ),
    (
        "lr",
        orjson.dumps({"inputs": [_tensor(datatype="FP99")]}),
        {},
        400,
        "input 'input': unknown datatype 'FP99'",
    ),
    (
        "lr",
        orjson.dumps({"inputs": [_tensor(shape=[2, 2])]}),
        {},
        400,
        "'input': expected shape [-1, 4], got [2, 2]",
    ),
    (
        "lr",
        orjson.dumps({"inputs": [_tensor(shape=[1, 5])]}),
        {},
        400,
        "shape [1, 5] needs 5 elements, data has 4",
    ),
    ("lr", orjson.dumps({"inputs": [_tensor(data=[[1, 2], [3]])]}), {}, 400, "input 'input'"),
    ("lr", orjson.dumps({"inputs": []}), {}, 400, "non-empty list"),
    ("lr", orjson.dumps({**GOOD, "outputs": [{"name": "proba"}]}), {}, 400, "unknown output 'proba'"),
    ("multi", _x_k(k={"name": "kk"}), {}, 400, "missing input(s) 'k'"),
    # what numpy would convert silently: null -> NaN, 1e39 -> inf in FP32, 1.5 -> 1 in INT64
    ("lr", orjson.dumps({"inputs": [_tensor(data=[1, None, 3, 4])]}), {}, 400, "data holds null or a number"),
    ("lr", orjson.dumps({"inputs": [_tensor(data=[1, 1e39, 3, 4])]}), {}, 400, "out of the FP32 range"),
    ("multi", _x_k(k={"data": [1.5]}), {}, 400, "INT64 data must be integers"),
    ("multi", _x_k(k={"datatype": "INT32"}), {}, 400, "'k': expected datatype INT64, got INT32"),
    ("multi", _x_k(k={"shape": [2, 1], "data": [1, 2]}), {}, 400, "inputs must agree on dimension 'batch'"),
    (
        "lr",
        orjson.dumps(GOOD),
        {"content-type": "text/plain"},
        415,
        "content type 'text/plain' is not supported",
    ),
    (
        "lr",
        orjson.dumps(GOOD),
        {"content-type": "multipart/form-data; boundary=x"},
        415,
        "multipart/form-data",
    ),
    (
        "lr",
        orjson.dumps(GOOD),
        {"inference-header-content-length": "abc"},
        400,
        "must be an integer, got 'abc'",
    ),
    ("lr", orjson.dumps(GOOD), {"inference-header-content-length": "99999"}, 400, "is outside the"),
    ("lr", orjson.dumps(GOOD), {"inference-header-content-length": "10"}, 400, "malformed JSON"),
    ("nope", orjson.dumps(GOOD), {}, 404, "model 'nope' is not served here"),
    ("lr/versions/7", orjson.dumps(GOOD), {}, 404, "model 'lr' has no version '7'"),
]


@pytest.mark.parametrize(("model", "body", "headers", "status", "message"), CASES)
def test_bad_request_gets_4xx_naming_the_problem(
    http: httpx.Client, model: str, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    headers = {"content-type": "application/json", **headers}
    r = http.post(f"/v2/models/{model}/infer", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"]


def test_binary_size_past_the_body_is_400(http: httpx.Client) -> None:
    head = orjson.dumps({"inputs": [_tensor(data=None, parameters={"binary_data_size": 16})]}).replace(
        b',"data":null', b""
    )
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}
    r = http.post("/v2/models/lr/infer", content=head + b"\0" * 8, headers=headers)
    assert r.status_code == 400 and "binary_data_size 16 runs past the end" in r.json()["error"]


def test_oversized_body_by_content_length_is_413(http: httpx.Client) -> None:
    r = http.post(
        "/v2/models/lr/infer", content=b" " * (MAX_BODY + 1), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and f"limit of {MAX_BODY} bytes" in r.json()["error"]


def test_oversized_chunked_body_is_413_while_streaming(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b" " * 16384

    r = http.post("/v2/models/lr/infer", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]


@pytest.mark.parametrize(("shape", "status"), [([10**12, 4], 413), ([10**6, 10**6], 413), ([1e12, 4], 400)])
def test_huge_shape_claims_fail_fast_without_allocating(
    http: httpx.Client, shape: list[Any], status: int
) -> None:
    start = time.perf_counter()
    r = http.post("/v2/models/lr/infer", json={"inputs": [_tensor(shape=shape)]})
    assert time.perf_counter() - start < 1.0
    assert r.status_code == status and "input 'input'" in r.json()["error"]


def test_unknown_routes_and_methods_answer_with_an_error_body(http: httpx.Client) -> None:
    r = http.get("/v2/nowhere")
    assert r.status_code == 404 and "error" in r.json()
    r = http.get("/v2/models/lr/infer")
    assert r.status_code == 405 and "error" in r.json()
    r = http.get("/v2/models/nope")
    assert r.status_code == 404 and "model 'nope'" in r.json()["error"]
    r = http.get("/v2/models/nope/ready")
    assert r.status_code == 404


def test_error_responses_carry_the_request_id(http: httpx.Client) -> None:
    r = http.post("/v2/models/nope/infer", json=GOOD, headers={"x-request-id": "trace-9"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "trace-9"
