"""A real replica serving V2 gRPC next to REST: tritonclient.grpc results equal bare ONNX Runtime."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.fixtures.models import build_logreg
from tests.fixtures.processes import free_port
from tests.fixtures.replica import running_replica

Files = dict[str, Path]


@pytest.fixture(scope="module")
def files(models_dir: Path, logreg_onnx: Path, multi_input_onnx: Path, typed_onnx: Path) -> Files:
    return {
        "lr:1": build_logreg(models_dir / "logreg-grpc-v1.onnx", seed=7),
        "lr:2": logreg_onnx,
        "multi": multi_input_onnx,
        "typed": typed_onnx,
    }


@pytest.fixture(scope="module")
def replica(files: Files) -> Iterator[tuple[str, str]]:
    """(REST base URL, gRPC host:port) of one replica process serving both."""
    grpc_port = free_port()
    with running_replica(files, "--grpc-port", str(grpc_port)) as url:
        target = f"127.0.0.1:{grpc_port}"
        deadline = time.monotonic() + 10
        while True:  # gRPC starts right after REST answers
            try:
                with tg.InferenceServerClient(target) as c:
                    if c.is_server_live():
                        break
            except InferenceServerException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url, target


@pytest.fixture(scope="module")
def client(replica: tuple[str, str]) -> Iterator[tg.InferenceServerClient]:
    c = tg.InferenceServerClient(replica[1])
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(replica: tuple[str, str]) -> Iterator[Any]:
    """tritonclient's own generated stub, for what its high-level client never sends (typed contents)."""
    with grpc.insecure_channel(replica[1]) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _ort(path: Path, feeds: dict[str, Any]) -> dict[str, Any]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def _input(name: str, arr: Any, datatype: str) -> tg.InferInput:
    i = tg.InferInput(name, list(arr.shape), datatype)
    i.set_data_from_numpy(arr)
    return i


def _error(fn: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as e:
        fn()
    return e.value


def test_health_and_metadata(client: tg.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "conveyor" and "binary_tensor_data" in meta["extensions"]
    lr = client.get_model_metadata("lr", as_json=True)
    assert lr["versions"] == ["1", "2"] and lr["platform"] == "onnxruntime_onnx"
    assert lr["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert [o["name"] for o in lr["outputs"]] == ["label", "probabilities"]
    assert client.get_model_metadata("lr", "1", as_json=True)["name"] == "lr"
    assert client.is_model_ready("lr") and client.is_model_ready("lr", "1") and client.is_model_ready("typed")


def test_fp32_in_int64_and_fp32_out_equal_onnxruntime(client: tg.InferenceServerClient, files: Files) -> None:
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    want = _ort(files["lr:2"], {"input": x})
    res = client.infer("lr", [_input("input", x, "FP32")], request_id="req-42")
    assert res.get_response().id == "req-42" and res.get_response().model_version == "2"
    np.testing.assert_array_equal(res.as_numpy("label"), want["label"])
    np.testing.assert_allclose(res.as_numpy("probabilities"), want["probabilities"], rtol=1e-6)
    v1 = client.infer("lr", [_input("input", x, "FP32")], model_version="1")
    np.testing.assert_allclose(
        v1.as_numpy("probabilities"), _ort(files["lr:1"], {"input": x})["probabilities"]
    )


def test_output_subset_and_two_input_datatypes(client: tg.InferenceServerClient, files: Files) -> None:
    x, k = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([[2], [3]], dtype=np.int64)
    res = client.infer(
        "multi", [_input("x", x, "FP32"), _input("k", k, "INT64")], outputs=[tg.InferRequestedOutput("y")]
    )
    np.testing.assert_array_equal(res.as_numpy("y"), _ort(files["multi"], {"x": x, "k": k})["y"])
    assert res.as_numpy("s") is None


def test_bytes_bool_and_fp16_via_raw_contents(client: tg.InferenceServerClient) -> None:
    text = np.array([b"hello", "é".encode(), b"a\x00b", b""], dtype=object)
    flag = np.array([True, False, True, True])
    half = np.array([[1.5, -2.0], [0.25, 65504 / 2]], dtype=np.float16)
    inputs = [_input("text", text, "BYTES"), _input("flag", flag, "BOOL"), _input("half", half, "FP16")]
    res = client.infer("typed", inputs)
    assert res.as_numpy("text_out").tolist() == text.tolist()
    np.testing.assert_array_equal(res.as_numpy("not_flag"), ~flag)
    np.testing.assert_array_equal(res.as_numpy("half_twice"), half + half)


def test_typed_contents_from_tritonclients_own_messages(stub: Any) -> None:
    req = service_pb2.ModelInferRequest(model_name="multi", id="typed-1")
    x = req.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    x.contents.fp32_contents.extend([1.0, 2.0, 3.0])
    req.inputs.add(name="k", datatype="INT64", shape=[1, 1]).contents.int64_contents.append(4)
    resp, call = stub.ModelInfer.with_call(req, metadata=[("x-request-id", "ignored-when-id-given")])
    assert resp.id == "typed-1" and [o.name for o in resp.outputs] == ["y", "s"]
    assert np.frombuffer(resp.raw_output_contents[0], "<f4").tolist() == [4.0, 8.0, 12.0]
    assert ("x-request-id", "typed-1") in tuple(call.trailing_metadata())


def test_request_id_from_metadata_when_the_message_has_none(stub: Any) -> None:
    req = service_pb2.ModelInferRequest(model_name="lr")
    req.inputs.add(name="input", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([0.0] * 4)
    resp, call = stub.ModelInfer.with_call(req, metadata=[("x-request-id", "from-header")])
    assert resp.id == "from-header" and ("x-request-id", "from-header") in tuple(call.trailing_metadata())


@pytest.mark.parametrize(
    ("model", "name", "arr", "datatype", "status", "message"),
    [
        ("lr", "inp", np.ones((1, 4), np.float32), "FP32", "INVALID_ARGUMENT", "unexpected input(s) 'inp'"),
        ("lr", "input", np.ones((1, 4), np.float64), "FP64", "INVALID_ARGUMENT", "'input'"),
        ("lr", "input", np.ones((1, 5), np.float32), "FP32", "INVALID_ARGUMENT", "'input'"),
        ("nope", "input", np.ones((1, 4), np.float32), "FP32", "NOT_FOUND", "'nope' is not served here"),
    ],
    ids=["wrong-name", "wrong-dtype", "wrong-shape", "unknown-model"],
)
def test_bad_input_gets_the_right_status_naming_the_problem(
    client: Any, model: str, name: str, arr: Any, datatype: str, status: str, message: str
) -> None:
    err = _error(lambda: client.infer(model, [_input(name, arr, datatype)]))
    assert err.status() == f"StatusCode.{status}" and message in err.message()
    assert client.is_server_ready()


def test_unknown_version_and_model_metadata_are_not_found(client: tg.InferenceServerClient) -> None:
    x = np.ones((1, 4), np.float32)
    err = _error(lambda: client.infer("lr", [_input("input", x, "FP32")], model_version="9"))
    assert err.status() == "StatusCode.NOT_FOUND" and "served versions: 1, 2" in err.message()
    assert _error(lambda: client.get_model_metadata("nope")).status() == "StatusCode.NOT_FOUND"


def test_malformed_raw_and_mixed_contents_are_invalid_argument(stub: Any) -> None:
    req = service_pb2.ModelInferRequest(model_name="lr", raw_input_contents=[b"\0" * 15])
    req.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "holds 15 bytes" in e.value.details()
    req.raw_input_contents[0] = b"\0" * 16
    req.inputs[0].contents.fp32_contents.extend([0.0] * 4)
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "send every input one way" in e.value.details()


def test_rest_and_grpc_on_one_replica_agree_under_concurrency(
    replica: tuple[str, str], client: tg.InferenceServerClient
) -> None:
    url = replica[0]
    x = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)
    doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 4], "data": x.ravel().tolist()}]}

    def rest(_: int) -> Any:
        out = httpx.post(f"{url}/v2/models/lr/infer", json=doc, timeout=10).json()["outputs"]
        probs = next(o["data"] for o in out if o["name"] == "probabilities")
        return np.array(probs, np.float32).reshape(3, 3)

    def grpc_call(_: int) -> Any:
        return client.infer("lr", [_input("input", x, "FP32")]).as_numpy("probabilities")

    with ThreadPoolExecutor(8) as pool:
        rest_results = list(pool.map(rest, range(16)))
        grpc_results = list(pool.map(grpc_call, range(16)))
    for r in rest_results + grpc_results:
        np.testing.assert_allclose(r, grpc_results[0], rtol=1e-6)
