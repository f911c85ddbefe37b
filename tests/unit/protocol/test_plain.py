"""The plain-request fast path agrees with the general codec: same arrays in, same bytes out, and every
request it does not take (or gets wrong) is left to the general codec, which words the error."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from conveyor.errors import ConveyorError
from conveyor.protocol.codec import decode_infer_request, encode_infer_response
from conveyor.protocol.plain import decode_plain, encode_plain
from conveyor.protocol.types import InferResponse, ResponseOutput
from tests.unit.protocol.test_codec_roundtrip import SAMPLES

MAX = 1 << 20


def tensor(name: str, datatype: str, arr: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": arr.ravel().tolist()}


NUMERIC = {dt: arr for dt, arr in SAMPLES.items() if dt != "BYTES"}
X = tensor("x", "FP32", NUMERIC["FP32"])
PLAIN = [{"inputs": [tensor("x", dt, arr)]} for dt, arr in NUMERIC.items()] + [
    {"id": "abc", "inputs": [tensor("a", "FP32", NUMERIC["FP32"]), tensor("b", "INT64", NUMERIC["INT64"])]},
    {"inputs": [{"name": "n", "datatype": "FP32", "shape": [2, 2], "data": [[1.0, 2.0], [3.0, 4.0]]}]},
    {"id": "", "inputs": [{"name": "s", "datatype": "FP64", "shape": [], "data": 2.5}]},
]


@pytest.mark.parametrize("doc", PLAIN)
def test_plain_requests_decode_as_the_codec_decodes_them(doc: dict[str, Any]) -> None:
    body = orjson.dumps(doc)
    plain = decode_plain(body, MAX)
    assert plain is not None
    inputs, rid = plain
    general = decode_infer_request(body, None, max_elements=MAX)
    assert rid == general.id
    assert list(inputs) == [i.name for i in general.inputs]
    for i in general.inputs:
        assert inputs[i.name].dtype == i.data.dtype and inputs[i.name].shape == i.data.shape
        np.testing.assert_array_equal(inputs[i.name], i.data)


LEFT = {
    "binary tensor": {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]
    },
    "requested outputs": {"inputs": [X], "outputs": [{"name": "y"}]},
    "parameters": {
        "inputs": [X],
        "parameters": {"binary_data_output": True},
    },
    "tensor parameters": {"inputs": [{**X, "parameters": {}}]},
    "BYTES": {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["a"]}]},
    "unknown datatype": {"inputs": [{"name": "x", "datatype": "FP8", "shape": [1], "data": [1.0]}]},
    "id not a string": {"id": 7, "inputs": [X]},
    "no inputs": {"inputs": []},
    "inputs not a list": {"inputs": {"x": 1}},
    "duplicate name": {"inputs": [X, X]},
    "bad shape": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1.0]}]},
    "count mismatch": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1.0]}]},
    "null in data": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [None]}]},
    "float in INT64": {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [1.5]}]},
    "overflow FP32": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1e39]}]},
    "over the element limit": {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 9], "data": [0.0] * 9}]
    },
    "second header bad, first data bad": {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [1], "data": [None]},
            {"name": "b", "datatype": "FP32", "shape": "x", "data": [1.0]},
        ]
    },
    "not an object": [1, 2],
}


@pytest.mark.parametrize("doc", LEFT.values(), ids=list(LEFT))
def test_everything_else_is_left_to_the_general_codec(doc: Any) -> None:
    assert decode_plain(orjson.dumps(doc), 8) is None


def test_malformed_json_is_left_to_the_general_codec() -> None:
    assert decode_plain(b'{"inputs": [', MAX) is None


@pytest.mark.parametrize("version", [None, "3"])
@pytest.mark.parametrize("rid", ["r-1", ""])
def test_answers_are_the_general_encoders_byte_for_byte(version: str | None, rid: str) -> None:
    results = {"label": np.array([2, 0], dtype=np.int64), "p": NUMERIC["FP32"], "h": NUMERIC["FP16"]}
    types = {"label": "INT64", "p": "FP32", "h": "FP16"}
    general = InferResponse(
        model_name="m",
        model_version=version,
        id=rid,
        outputs=[ResponseOutput(n, types[n], a.shape, a) for n, a in results.items()],
    )
    assert encode_plain("m", version, rid, results, types) == encode_infer_response(general)[0]


def test_bytes_outputs_are_left_to_the_general_encoder() -> None:
    results = {"s": np.array([b"a"], dtype=object)}
    assert encode_plain("m", None, "r", results, {"s": "BYTES"}) is None


def test_general_codec_refuses_what_plain_left_with_its_own_message() -> None:
    body = orjson.dumps(LEFT["second header bad, first data bad"])
    with pytest.raises(ConveyorError, match="input 'b': shape must be a list"):
        decode_infer_request(body, None, max_elements=MAX)
