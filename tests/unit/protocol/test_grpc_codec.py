"""gRPC codec: ModelInferRequest -> V2 body -> numpy and V2 response -> ModelInferResponse, every datatype."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from conveyor.errors import InvalidInput
from conveyor.protocol.codec import binary_outputs_of, decode_infer_request, encode_infer_response
from conveyor.protocol.datatypes import numpy_dtype
from conveyor.protocol.grpc import pb
from conveyor.protocol.protobuf import (
    CONTENTS_FIELD,
    body_to_infer_response,
    infer_request_to_body,
    parameters_to_json,
    set_parameters,
)
from conveyor.protocol.tensors import from_binary, to_binary
from conveyor.protocol.types import InferResponse, ResponseOutput

SAMPLES: dict[str, Any] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 255, 7]], dtype=np.uint8),
    "UINT16": np.array([0, 65535], dtype=np.uint16),
    "UINT32": np.array([0, 2**32 - 1], dtype=np.uint32),
    "UINT64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 127], dtype=np.int8),
    "INT16": np.array([-(2**15), 2**15 - 1], dtype=np.int16),
    "INT32": np.array([[-(2**31)], [2**31 - 1]], dtype=np.int32),
    "INT64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
    "FP16": np.array([1.5, -0.25, 65504], dtype=np.float16),
    "FP32": np.array([[1.5, -2.25], [3e38, 0.0]], dtype=np.float32),
    "FP64": np.array([1e300, -1e-300], dtype=np.float64),
    "BYTES": np.array([b"", b"hello", "é".encode(), b"\x00\xff"], dtype=object),
}


def _request(datatype: str, arr: Any, *, raw: bool) -> Any:
    msg = pb.ModelInferRequest(model_name="m", id="req-1")
    t = msg.inputs.add(name="x", datatype=datatype, shape=list(arr.shape))
    if raw:
        msg.raw_input_contents.append(bytes(to_binary(arr, datatype)))
    else:
        getattr(t.contents, CONTENTS_FIELD[datatype]).extend(arr.reshape(-1).tolist())
    return msg


def _decoded(msg: Any) -> Any:
    body, json_length = infer_request_to_body(msg)
    return decode_infer_request(body, json_length, max_elements=1000)


def _assert_same(got: Any, want: Any) -> None:
    assert got.shape == want.shape
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_round_trips_through_raw_contents(datatype: str) -> None:
    req = _decoded(_request(datatype, SAMPLES[datatype], raw=True))
    assert req.id == "req-1" and req.inputs[0].datatype == datatype
    _assert_same(req.inputs[0].data, SAMPLES[datatype])
    assert binary_outputs_of(req) is True  # responses come back binary, ready for raw_output_contents


@pytest.mark.parametrize("datatype", [d for d in SAMPLES if d != "FP16"])
def test_every_typed_datatype_round_trips_through_contents(datatype: str) -> None:
    _assert_same(_decoded(_request(datatype, SAMPLES[datatype], raw=False)).inputs[0].data, SAMPLES[datatype])


@pytest.mark.parametrize("binary", [True, False], ids=["binary-body", "json-body"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_comes_back_in_raw_output_contents(datatype: str, binary: bool) -> None:
    arr = SAMPLES[datatype]
    if not binary and datatype == "BYTES":
        arr = np.array([b"", b"hello", "é".encode()], dtype=object)  # JSON carries UTF-8 text only
    out = ResponseOutput("y", datatype, arr.shape, arr, {"note": "kept"})
    body, json_length = encode_infer_response(
        InferResponse("m", [out], model_version="3", id="r", parameters={"p": 1.5}), binary_outputs=binary
    )
    resp = body_to_infer_response(body, json_length, model_name="m", model_version="3", request_id="r")
    assert (resp.model_name, resp.model_version, resp.id) == ("m", "3", "r")
    assert parameters_to_json(resp.parameters) == {"p": 1.5}
    (o,) = resp.outputs
    assert (o.name, o.datatype, list(o.shape)) == ("y", datatype, list(arr.shape))
    assert parameters_to_json(o.parameters) == {"note": "kept"}  # binary_data_size is framing, not data
    raw = resp.raw_output_contents[0]
    count = int(np.prod(arr.shape))
    _assert_same(from_binary("y", datatype, numpy_dtype(datatype), arr.shape, count, raw, 0, len(raw)), arr)


def test_several_inputs_keep_order_and_requested_outputs_are_forwarded() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    for name, arr in (("a", SAMPLES["FP32"]), ("b", SAMPLES["BYTES"]), ("c", SAMPLES["INT64"])):
        dt = {"a": "FP32", "b": "BYTES", "c": "INT64"}[name]
        msg.inputs.add(name=name, datatype=dt, shape=list(arr.shape))
        msg.raw_input_contents.append(bytes(to_binary(arr, dt)))
    msg.outputs.add(name="y").parameters["binary_data"].bool_param = False  # ignored: always binary
    req = _decoded(msg)
    assert [i.name for i in req.inputs] == ["a", "b", "c"]
    _assert_same(req.inputs[1].data, SAMPLES["BYTES"])
    assert req.output_names() == ["y"] and binary_outputs_of(req) == frozenset({"y"})


def test_parameters_map_both_ways() -> None:
    params = {"flag": True, "n": -3, "big": 2**64 - 1, "x": 0.5, "s": "text", "list": [1, 2]}
    msg = pb.ModelInferRequest()
    set_parameters(msg.parameters, params)
    assert msg.parameters["big"].WhichOneof("parameter_choice") == "uint64_param"
    assert parameters_to_json(msg.parameters) == {**params, "list": "[1,2]"}


def _fp32(msg: Any, name: str = "x", shape: tuple[int, ...] = (2,)) -> Any:
    return msg.inputs.add(name=name, datatype="FP32", shape=list(shape))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda m: None, "at least one input"),
        (
            lambda m: (_fp32(m), _fp32(m, "z"), m.raw_input_contents.append(b"\0" * 8)),
            "2 inputs but 1 raw_input_contents",
        ),
        (
            lambda m: (_fp32(m), m.raw_input_contents.append(b"\0" * 7)),
            "input 'x': raw_input_contents[0] holds 7 bytes but 2 FP32 elements need 8",
        ),
        (
            lambda m: (
                _fp32(m).contents.fp32_contents.extend([1, 2]),
                _fp32(m, "z"),
                m.raw_input_contents.extend([b"", b""]),
            ),
            "input 'x' has typed contents but the request also uses raw_input_contents",
        ),
        (
            lambda m: _fp32(m).contents.int64_contents.extend([1, 2]),
            "input 'x' is FP32, which travels in contents.fp32_contents, not contents.int64_contents",
        ),
        (
            lambda m: _fp32(m).contents.fp32_contents.extend([1]),
            "needs 2 elements, contents.fp32_contents has 1",
        ),
        (lambda m: _fp32(m), "needs 2 elements, contents.fp32_contents has 0"),
        (
            lambda m: m.inputs.add(name="h", datatype="FP16", shape=[1]).contents.fp32_contents.append(1),
            "input 'h': FP16 has no typed contents field; send it in raw_input_contents",
        ),
        (
            lambda m: m.inputs.add(name="i", datatype="INT8", shape=[1]).contents.int_contents.append(300),
            "input 'i': contents.int_contents holds a value outside INT8",
        ),
        (
            lambda m: (m.inputs.add(name="q", datatype="QUAD", shape=[1]), m.raw_input_contents.append(b"")),
            "input 'q': unknown datatype 'QUAD'",
        ),
        (
            lambda m: (_fp32(m, shape=(-1,)), m.raw_input_contents.append(b"")),
            "input 'x': shape must be a list of non-negative integers",
        ),
    ],
)
def test_bad_requests_are_invalid_input_naming_the_problem(build: Any, message: str) -> None:
    msg = pb.ModelInferRequest(model_name="m")
    build(msg)
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        infer_request_to_body(msg)


def test_generated_messages_coexist_with_tritonclient_in_one_process() -> None:
    # Both define inference.* messages; ours live in a private pool, so either import order works.
    code = (
        "import conveyor.protocol.grpc as c, tritonclient.grpc.service_pb2 as t;"
        "m = c.pb.ModelInferRequest(model_name='m', raw_input_contents=[b'x']);"
        "assert t.ModelInferRequest.FromString(m.SerializeToString()).raw_input_contents == [b'x']"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
