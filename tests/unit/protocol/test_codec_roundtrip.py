"""The codec's round trips: every datatype through JSON and binary, both directions, nested and flat data."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from conveyor.protocol.codec import (
    binary_outputs_of,
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
)
from conveyor.protocol.types import InferResponse, ResponseOutput

MAX = 1 << 20

SAMPLES: dict[str, np.ndarray[Any, Any]] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
    "UINT16": np.array([0, 65535], dtype=np.uint16),
    "UINT32": np.array([0, 2**32 - 1], dtype=np.uint32),
    "UINT64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 0, 127], dtype=np.int8),
    "INT16": np.array([-(2**15), 2**15 - 1], dtype=np.int16),
    "INT32": np.array([[-(2**31)], [2**31 - 1]], dtype=np.int32),
    "INT64": np.array([-(2**63), 0, 2**63 - 1], dtype=np.int64),
    "FP16": np.array([0.5, -1.25, 65504.0], dtype=np.float16),
    "FP32": np.array([[0.1, -2.5], [3.25, 1e-30]], dtype=np.float32),
    "FP64": np.array([np.pi, -1e300], dtype=np.float64),
    "BYTES": np.array([[b"a", b""], [b"\xc3\xa9t\xc3\xa9", b"xyz"]], dtype=object),
}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_request_round_trip_keeps_dtype_shape_and_values(datatype: str, binary: bool) -> None:
    arr = SAMPLES[datatype]
    body, json_len = encode_infer_request([("t", arr, datatype)], id="r1", binary=binary)
    assert (json_len is not None) == binary
    req = decode_infer_request(body, json_len, max_elements=MAX)
    (got,) = req.inputs
    assert (got.name, got.datatype, got.shape, req.id) == ("t", datatype, arr.shape, "r1")
    assert got.data.dtype == arr.dtype
    np.testing.assert_array_equal(got.data, arr)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_response_round_trip_keeps_dtype_shape_and_values(datatype: str, binary: bool) -> None:
    arr = SAMPLES[datatype]
    resp = InferResponse("m", [ResponseOutput("o", datatype, arr.shape, arr)], model_version="3", id="x")
    body, json_len = encode_infer_response(resp, binary_outputs=binary)
    back = decode_infer_response(body, json_len)
    assert (back.model_name, back.model_version, back.id) == ("m", "3", "x")
    (out,) = back.outputs
    assert (out.datatype, out.shape, out.data.dtype) == (datatype, arr.shape, arr.dtype)
    np.testing.assert_array_equal(out.data, arr)


def test_nested_and_flat_json_data_decode_alike() -> None:
    flat = b'{"inputs":[{"name":"a","datatype":"INT32","shape":[2,2],"data":[1,2,3,4]}]}'
    nested = b'{"inputs":[{"name":"a","datatype":"INT32","shape":[2,2],"data":[[1,2],[3,4]]}]}'
    a = decode_infer_request(flat, None, max_elements=MAX).inputs[0].data
    b = decode_infer_request(nested, None, max_elements=MAX).inputs[0].data
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 2)


def test_binary_inputs_are_views_of_the_body_when_aligned() -> None:
    arr = np.arange(8, dtype=np.float32)
    body, json_len = encode_infer_request({"x": arr}, binary=True)
    assert json_len is not None
    pad = (-json_len) % 4  # pad the JSON so the tensor starts aligned, as a client may
    body = body[:json_len] + b" " * pad + body[json_len:]
    req = decode_infer_request(body, json_len + pad, max_elements=MAX)
    assert np.shares_memory(req.inputs[0].data, np.frombuffer(body, dtype=np.uint8))


def test_mixed_json_and_binary_inputs_in_one_request() -> None:
    body, json_len = encode_infer_request({"b": np.array([1.5], np.float64)}, binary=True)
    doc = orjson.loads(body[:json_len])
    doc["inputs"].insert(0, {"name": "a", "datatype": "BOOL", "shape": [2], "data": [True, False]})
    head = orjson.dumps(doc)
    req = decode_infer_request(head + body[json_len:], len(head), max_elements=MAX)
    assert [i.name for i in req.inputs] == ["a", "b"]
    assert req.inputs[1].data.tolist() == [1.5]


def test_empty_tensor_round_trips() -> None:
    arr = np.zeros((0, 4), dtype=np.float32)
    for binary in (False, True):
        body, json_len = encode_infer_request({"x": arr}, binary=binary)
        assert decode_infer_request(body, json_len, max_elements=MAX).inputs[0].data.shape == (0, 4)


def test_unicode_numpy_strings_travel_as_bytes() -> None:
    body, json_len = encode_infer_request({"s": np.array(["héllo", "w"])})
    got = decode_infer_request(body, json_len, max_elements=MAX).inputs[0]
    assert got.datatype == "BYTES"
    assert got.data.tolist() == ["héllo".encode(), b"w"]


def test_requested_outputs_and_binary_choice() -> None:
    body, json_len = encode_infer_request({"x": np.ones(1)}, outputs=["a", "b"], binary_outputs=True)
    req = decode_infer_request(body, json_len, max_elements=MAX)
    assert req.output_names() == ["a", "b"]
    assert binary_outputs_of(req) == frozenset({"a", "b"})
    doc = {
        "parameters": {"binary_data_output": True},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
        "outputs": [{"name": "a", "parameters": {"binary_data": False}}, {"name": "b"}],
    }
    req = decode_infer_request(orjson.dumps(doc), None, max_elements=MAX)
    assert binary_outputs_of(req) == frozenset({"b"})
    doc.pop("outputs")
    assert binary_outputs_of(decode_infer_request(orjson.dumps(doc), None, max_elements=MAX)) is True


def test_response_mixes_binary_and_json_outputs() -> None:
    outs = [
        ResponseOutput("j", "INT64", (2,), np.array([1, 2])),
        ResponseOutput("b", "FP32", (1,), np.array([0.5], np.float32)),
    ]
    body, json_len = encode_infer_response(InferResponse("m", outs), binary_outputs={"b"})
    doc = orjson.loads(body[:json_len])
    assert doc["outputs"][0]["data"] == [1, 2]
    assert doc["outputs"][1]["parameters"] == {"binary_data_size": 4}
    assert decode_infer_response(body, json_len).as_dict()["b"].tolist() == [0.5]


def test_string_outputs_from_onnxruntime_encode_as_text() -> None:
    arr = np.array(["é", "b"], dtype=object)  # ONNX Runtime hands back str, not bytes
    body, _ = encode_infer_response(InferResponse("m", [ResponseOutput("s", "BYTES", (2,), arr)]))
    assert orjson.loads(body)["outputs"][0]["data"] == ["é", "b"]
