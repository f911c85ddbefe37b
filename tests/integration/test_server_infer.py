"""A real replica over HTTP: tritonclient and httpx, JSON and binary tensors, equal to bare ONNX Runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from conveyor.protocol.codec import decode_infer_response, encode_infer_request
from tests.fixtures.models import build_logreg
from tests.fixtures.replica import running_replica

Files = dict[str, Path]


@pytest.fixture(scope="module")
def files(models_dir: Path, logreg_onnx: Path, multi_input_onnx: Path, typed_onnx: Path) -> Files:
    return {
        "lr:1": build_logreg(models_dir / "logreg-v1.onnx", seed=7),
        "lr:2": logreg_onnx,
        "multi": multi_input_onnx,
        "typed": typed_onnx,
    }


@pytest.fixture(scope="module")
def url(files: Files) -> Iterator[str]:
    with running_replica(files) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url.removeprefix("http://"))
    yield c
    c.close()


def _ort(path: Path, feeds: dict[str, Any]) -> dict[str, Any]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def test_health_and_server_metadata(client: triton.InferenceServerClient, url: str) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "conveyor" and "binary_tensor_data" in meta["extensions"]
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}


def test_model_metadata_and_readiness(client: triton.InferenceServerClient, url: str) -> None:
    meta = client.get_model_metadata("lr")
    assert meta["versions"] == ["1", "2"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert client.get_model_metadata("lr", "1")["name"] == "lr"
    assert client.is_model_ready("lr") and client.is_model_ready("lr", "1")
    assert httpx.get(f"{url}/v2/models/lr/versions/2/ready").json() == {"name": "lr", "ready": True}
    assert not client.is_model_ready("lr", "3")


@pytest.mark.parametrize("binary_out", [False, True], ids=["json-out", "binary-out"])
@pytest.mark.parametrize("binary_in", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("version", ["", "1", "2"])
def test_tritonclient_logreg_equals_onnxruntime(
    client: triton.InferenceServerClient, files: Files, version: str, binary_in: bool, binary_out: bool
) -> None:
    x = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    outs = [triton.InferRequestedOutput(n, binary_data=binary_out) for n in ("label", "probabilities")]
    result = client.infer("lr", [inp], model_version=version, outputs=outs, request_id="req-7")
    want = _ort(files[f"lr:{version or '2'}"], {"input": x})
    np.testing.assert_array_equal(result.as_numpy("label"), want["label"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), want["probabilities"], rtol=1e-6)
    resp = result.get_response()
    assert (resp["id"], resp["model_version"]) == ("req-7", version or "2")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_two_inputs_and_an_output_subset(
    client: triton.InferenceServerClient, files: Files, binary: bool
) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    k = np.array([[2], [-1]], dtype=np.int64)
    inputs = [triton.InferInput("x", [2, 3], "FP32"), triton.InferInput("k", [2, 1], "INT64")]
    inputs[0].set_data_from_numpy(x, binary_data=binary)
    inputs[1].set_data_from_numpy(k, binary_data=binary)
    result = client.infer("multi", inputs, outputs=[triton.InferRequestedOutput("s", binary_data=binary)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["s"]
    np.testing.assert_array_equal(result.as_numpy("s"), _ort(files["multi"], {"x": x, "k": k})["s"])


def test_bytes_bool_and_fp16_in_binary(client: triton.InferenceServerClient) -> None:
    text = np.array([b"caf\xc3\xa9", b"", b"z"], dtype=object)
    flag = np.array([True, False])
    half = np.array([[0.5, -2.0], [1.5, 3.0]], dtype=np.float16)
    inputs = [
        triton.InferInput("text", [3], "BYTES"),
        triton.InferInput("flag", [2], "BOOL"),
        triton.InferInput("half", [2, 2], "FP16"),
    ]
    for i, arr in zip(inputs, (text, flag, half), strict=True):
        i.set_data_from_numpy(arr, binary_data=True)
    outs = [triton.InferRequestedOutput(n, binary_data=True) for n in ("text_out", "not_flag", "half_twice")]
    result = client.infer("typed", inputs, outputs=outs)
    assert result.as_numpy("text_out").tolist() == text.tolist()
    assert result.as_numpy("not_flag").tolist() == [False, True]
    np.testing.assert_array_equal(result.as_numpy("half_twice"), half + half)


def test_bytes_and_bool_in_json(client: triton.InferenceServerClient) -> None:
    inputs = [
        triton.InferInput("text", [2], "BYTES"),
        triton.InferInput("flag", [1], "BOOL"),
        triton.InferInput("half", [1, 2], "FP16"),
    ]
    inputs[0].set_data_from_numpy(np.array([b"a", b"bc"], dtype=object), binary_data=False)
    inputs[1].set_data_from_numpy(np.array([False]), binary_data=False)
    inputs[2].set_data_from_numpy(np.array([[1.0, 2.0]], np.float16), binary_data=True)
    outs = [triton.InferRequestedOutput(n, binary_data=False) for n in ("text_out", "not_flag")]
    result = client.infer("typed", inputs, outputs=outs)
    assert result.get_response()["outputs"][0]["data"] == ["a", "bc"]
    assert result.as_numpy("not_flag").tolist() == [True]


def test_request_ids_are_echoed_or_generated(url: str) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    r = httpx.post(f"{url}/v2/models/lr/infer", json=body)
    assert r.status_code == 200 and r.json()["id"] and r.headers["x-request-id"] == r.json()["id"]
    r = httpx.post(f"{url}/v2/models/lr/infer", json=body, headers={"X-Request-Id": "hdr-1"})
    assert r.json()["id"] == "hdr-1" and r.headers["x-request-id"] == "hdr-1"
    r = httpx.post(f"{url}/v2/models/lr/infer", json={**body, "id": "body-1", "parameters": {"priority": 1}})
    assert r.json()["id"] == "body-1" and r.headers["x-request-id"] == "body-1"
    assert r.json()["model_name"] == "lr" and r.json()["model_version"] == "2"


@pytest.mark.parametrize("body_id", ["日本", "a\r\nb", "nul\u0000", "x" * 100_000])
def test_a_body_id_that_is_no_header_value_stays_in_the_body(url: str, body_id: str) -> None:
    body = {
        "id": body_id,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}],
    }
    r = httpx.post(f"{url}/v2/models/lr/infer", json=body)
    assert r.status_code == 200 and r.json()["id"] == body_id
    assert r.headers["x-request-id"] and r.headers["x-request-id"] != body_id  # a generated one


def test_the_codec_client_talks_to_the_server(url: str, files: Files) -> None:
    x = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    body, json_len = encode_infer_request(
        {"input": x}, binary=True, binary_outputs=True, outputs=["probabilities"]
    )
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(json_len)}
    r = httpx.post(f"{url}/v2/models/lr/versions/1/infer", content=body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    resp = decode_infer_response(r.content, int(r.headers["inference-header-content-length"]))
    want = _ort(files["lr:1"], {"input": x})["probabilities"]
    np.testing.assert_allclose(resp.as_dict()["probabilities"], want, rtol=1e-6)
