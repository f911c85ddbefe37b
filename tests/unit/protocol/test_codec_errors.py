"""Malformed requests get InvalidInput / PayloadTooLarge naming the problem, before anything is allocated."""

from __future__ import annotations

import struct
import time
from typing import Any

import numpy as np
import orjson
import pytest

from conveyor.errors import InvalidInput, PayloadTooLarge
from conveyor.protocol.codec import decode_infer_request, decode_infer_response, encode_infer_request

MAX = 1 << 20


def _decode(doc: Any, tail: bytes = b"", json_len: int | None = None, max_elements: int = MAX) -> Any:
    head = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    if tail and json_len is None:
        json_len = len(head)
    return decode_infer_request(head + tail, json_len, max_elements=max_elements)


def _inp(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


BAD_REQUESTS = [
    pytest.param(b"{not json", "malformed JSON", id="malformed-json"),
    pytest.param(b"[1,2]", "JSON object", id="not-an-object"),
    pytest.param({}, "'inputs'", id="no-inputs"),
    pytest.param({"inputs": []}, "non-empty", id="empty-inputs"),
    pytest.param({"inputs": {"x": 1}}, "non-empty list", id="inputs-not-list"),
    pytest.param({"inputs": [3]}, "input #0", id="input-not-object"),
    pytest.param({"inputs": [_inp(name=...)]}, "input #0 needs a string 'name'", id="no-name"),
    pytest.param({"inputs": [_inp(datatype=...)]}, "input 'x' needs a string 'datatype'", id="no-datatype"),
    pytest.param(
        {"inputs": [_inp(datatype="FP8")]}, "input 'x': unknown datatype 'FP8'", id="unknown-datatype"
    ),
    pytest.param({"inputs": [_inp(shape=...)]}, "input 'x' needs a 'shape'", id="no-shape"),
    pytest.param({"inputs": [_inp(shape=[-1])]}, "input 'x': shape must be", id="negative-dim"),
    pytest.param({"inputs": [_inp(shape=[2.0])]}, "input 'x': shape must be", id="float-dim"),
    pytest.param({"inputs": [_inp(shape=[True, 2])]}, "input 'x': shape must be", id="bool-dim"),
    pytest.param({"inputs": [_inp(shape="2")]}, "input 'x': shape must be", id="shape-not-list"),
    pytest.param(
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[18446744073709551616],"data":[1]}]}',
        "input 'x': shape must be",
        id="dim-past-uint64",
    ),
    pytest.param({"inputs": [_inp(shape=[2**64 - 1])]}, "input 'x': shape must be", id="dim-past-int64"),
    pytest.param({"inputs": [_inp(shape=[1e12])]}, "input 'x': shape must be", id="dim-as-float"),
    pytest.param({"inputs": [_inp(data=...)]}, "input 'x' needs 'data'", id="no-data"),
    pytest.param(
        {"inputs": [_inp(shape=[3])]}, "input 'x': shape [3] needs 3 elements, data has 2", id="short"
    ),
    pytest.param({"inputs": [_inp(data=[[1.0], [2.0, 3.0]])]}, "input 'x'", id="ragged"),
    pytest.param(
        {"inputs": [_inp(data=[[1.0, 2.0], [3.0, 4.0]])]}, "needs 2 elements, data has 4", id="nested-long"
    ),
    pytest.param(
        {"inputs": [_inp(data=["a", "b"])]}, "input 'x': data is not a valid FP32", id="strings-as-fp32"
    ),
    pytest.param({"inputs": [_inp(datatype="UINT8", data=[1, 300])]}, "input 'x'", id="out-of-range"),
    pytest.param(
        {"inputs": [_inp(datatype="BYTES", data=[1, 2])]}, "BYTES data must be strings", id="bytes-numbers"
    ),
    pytest.param({"inputs": [_inp(), _inp()]}, "input 'x' is given more than once", id="duplicate"),
    pytest.param({"inputs": [_inp(parameters=[1])]}, "'parameters' must be an object", id="params-not-dict"),
    pytest.param({"id": 5, "inputs": [_inp()]}, "'id' must be a string", id="id-not-string"),
    pytest.param({"inputs": [_inp()], "outputs": "y"}, "'outputs' must be a list", id="outputs-not-list"),
    pytest.param({"inputs": [_inp()], "outputs": [{}]}, "requested output #0", id="output-no-name"),
]


@pytest.mark.parametrize(("doc", "message"), BAD_REQUESTS)
def test_bad_request_is_invalid_input_naming_the_problem(doc: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        _decode(doc)
    assert not isinstance(info.value, PayloadTooLarge)
    assert message in str(info.value)


def test_huge_shape_claim_is_too_large_without_allocating() -> None:
    start = time.perf_counter()
    for shape in ([10**12], [10**6, 10**6, 10**6], [2**63 - 1, 2]):
        with pytest.raises(PayloadTooLarge, match=r"input 'x'.*limit is"):
            _decode({"inputs": [_inp(shape=shape, data=[1.0])]})
        with pytest.raises(PayloadTooLarge):
            _decode({"inputs": [_inp(shape=shape, data=..., parameters={"binary_data_size": 8})]}, b"\0" * 8)
    assert time.perf_counter() - start < 0.5


def test_element_limit_counts_all_inputs_together() -> None:
    doc = {"inputs": [_inp(name="a"), _inp(name="b")]}
    _decode(doc, max_elements=4)
    with pytest.raises(PayloadTooLarge, match=r"input 'b'.*4 elements, the limit is 3"):
        _decode(doc, max_elements=3)


def _bin(size: Any, datatype: str = "FP32", shape: list[int] | None = None) -> dict[str, Any]:
    p = {"binary_data_size": size}
    return {"inputs": [_inp(datatype=datatype, shape=shape or [2], data=..., parameters=p)]}


BAD_BINARY = [
    pytest.param(_bin(8), b"\0" * 4, None, "runs past the end of the body", id="size-past-end"),
    pytest.param(
        _bin(4), b"\0" * 4, None, "binary_data_size 4 does not match shape of 2 FP32", id="size-vs-shape"
    ),
    pytest.param(_bin(-8), b"", None, "binary_data_size must be a non-negative integer", id="negative-size"),
    pytest.param(_bin("8"), b"\0" * 8, None, "binary_data_size must be", id="size-not-int"),
    pytest.param(
        _bin(8), b"\0" * 12, None, "4 bytes of binary data that no input claims", id="trailing-bytes"
    ),
    pytest.param(
        _bin(8), b"\0" * 8, 10**6, "Inference-Header-Content-Length 1000000 is outside", id="header-too-big"
    ),
    pytest.param(_bin(8), b"\0" * 8, -1, "Inference-Header-Content-Length -1", id="header-negative"),
    pytest.param(_bin(8), b"\0" * 8, 5, "malformed JSON", id="header-cuts-json"),
    pytest.param(_bin(4, "BYTES"), b"\0" * 4, None, "too small for 2 BYTES elements", id="bytes-size-small"),
    pytest.param(
        _bin(12, "BYTES"),
        struct.pack("<I", 9) + b"\0" * 8,
        None,
        "claims 9 bytes past the end",
        id="bytes-overrun",
    ),
    pytest.param(
        _bin(10, "BYTES"), struct.pack("<II", 0, 0) + b"ab", None, "BYTES elements use 8", id="bytes-leftover"
    ),
]


@pytest.mark.parametrize(("doc", "tail", "json_len", "message"), BAD_BINARY)
def test_bad_binary_framing_is_invalid_input(
    doc: Any, tail: bytes, json_len: int | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        _decode(doc, tail, json_len)


def test_data_and_binary_size_together_is_refused() -> None:
    doc = {"inputs": [_inp(parameters={"binary_data_size": 8})]}
    with pytest.raises(InvalidInput, match="both 'data' and"):
        _decode(doc, b"\0" * 8)


def test_response_decoder_surfaces_a_server_error() -> None:
    with pytest.raises(InvalidInput, match="not an inference response: model 'm' is not served"):
        decode_infer_response(b'{"error": "model \'m\' is not served"}', None)


def test_client_encoder_refuses_dtypes_without_a_v2_datatype() -> None:
    with pytest.raises(InvalidInput, match="complex"):
        encode_infer_request({"x": np.array([1j])})
