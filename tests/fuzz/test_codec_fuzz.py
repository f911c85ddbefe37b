"""The V2 request parsers under hypothesis: whatever the body, a 4xx error (InvalidInput) or a request."""

from __future__ import annotations

import re
import time

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conveyor.errors import InvalidInput
from conveyor.frontend.http_errors import status_for
from conveyor.frontend.rest import parse_header_length
from conveyor.protocol.codec import decode_infer_request, decode_infer_response
from conveyor.protocol.plain import decode_plain
from conveyor.protocol.types import InferRequest
from tests.fuzz.strategies import FUZZ, binary_bodies, nested, v2_bodies

MAX_ELEMENTS = 1000
FAST_S = 5.0  # one decode of a body of a few KB takes milliseconds: this catches a hang, not a loaded machine


def decode(body: bytes, json_length: int | None) -> InferRequest | InvalidInput:
    """The general codec's answer: a request or the 4xx error; any other exception fails the test."""
    start = time.perf_counter()
    try:
        return decode_infer_request(body, json_length, max_elements=MAX_ELEMENTS, max_depth=64)
    except InvalidInput as exc:
        assert 400 <= status_for(exc) < 500
        assert exc.message
        return exc
    finally:
        assert time.perf_counter() - start < FAST_S


@FUZZ
@given(v2_bodies())
@example(
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": '
    + b"[" * 2000
    + b"]" * 2000
    + b"}]}"
)
@example(b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [NaN]}]}')
@example(b'{"inputs": [{"name": "x", "datatype": "INT64", "shape": [2], "data": [1, 18446744073709551615]}]}')
def test_any_json_body_decodes_or_gets_a_4xx_and_plain_agrees(body: bytes) -> None:
    general = decode(body, None)
    plain = decode_plain(body, MAX_ELEMENTS, 64)  # never raises: None hands over to the general codec
    if plain is not None:  # the fast path accepts only what the general codec accepts, with the same values
        assert isinstance(general, InferRequest), general
        inputs, rid = plain
        assert rid == general.id
        for given_input in general.inputs:
            assert inputs[given_input.name].tobytes() == given_input.data.tobytes()


@FUZZ
@given(binary_bodies())
def test_binary_bodies_with_any_header_length_decode_or_get_a_4xx(case: tuple[bytes, int | None]) -> None:
    body, json_length = case
    decode(body, json_length)


@FUZZ
@given(st.one_of(st.none(), st.text(max_size=30), st.integers().map(str), st.just("9" * 5000)))
def test_any_inference_header_content_length_is_an_integer_or_a_4xx(raw: str | None) -> None:
    try:
        value = parse_header_length(raw)
    except InvalidInput as exc:
        assert "Inference-Header-Content-Length" in exc.message
    else:
        assert value is None or isinstance(value, int)


@pytest.mark.parametrize("where", ["data", "parameters", "outputs"])
def test_a_body_nested_deeper_than_max_json_depth_gets_400_naming_the_limit(where: str) -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}
    if where == "data":
        tensor["data"] = nested(62, 1.0)  # 3 levels of document + 62 of data: 65
    doc: dict[str, object] = {"inputs": [tensor]}
    if where == "parameters":
        doc["parameters"] = {"a": nested(63, 1)}
    elif where == "outputs":
        doc["outputs"] = [{"name": "y", "parameters": nested(63, {})}]
    body = orjson.dumps(doc)
    with pytest.raises(InvalidInput, match=r"nested more than 64 levels deep \(the max_json_depth limit\)"):
        decode_infer_request(body, None, max_elements=MAX_ELEMENTS, max_depth=64)
    assert decode_plain(body, MAX_ELEMENTS, 64) is None


def test_a_body_at_max_json_depth_decodes() -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": nested(61, 1.0)}]}
    )
    assert decode_infer_request(body, None, max_elements=MAX_ELEMENTS, max_depth=64).inputs[0].data.size == 1
    assert decode_plain(body, MAX_ELEMENTS, 64) is not None


def test_a_body_past_orjsons_own_depth_names_the_limit_too() -> None:
    body = b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(InvalidInput, match="nested more than 64 levels deep"):
        decode_infer_request(body, None, max_elements=MAX_ELEMENTS, max_depth=64)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ([0, 2**62], "too large even for an empty tensor"),
        ([0, 2**31, 2**31], "too large even for an empty tensor"),
        ([1] * 65, "65 dimensions; at most 64"),
    ],
)
@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
@pytest.mark.parametrize("binary", [False, True])
def test_a_shape_numpy_cannot_make_gets_400_not_500(
    shape: list[int], message: str, datatype: str, binary: bool
) -> None:
    count = 0 if 0 in shape else 1
    tensor: dict[str, object] = {"name": "x", "datatype": datatype, "shape": shape}
    if binary:
        data = (b"\x01\x00\x00\x00a" if datatype == "BYTES" else b"\x00" * 4) * count
        tensor["parameters"] = {"binary_data_size": len(data)}
    else:
        data = b""
        tensor["data"] = ["a" if datatype == "BYTES" else 1.0] * count
    head = orjson.dumps({"inputs": [tensor]})
    with pytest.raises(InvalidInput, match=re.escape(message)):
        decode_infer_request(head + data, len(head) if binary else None, max_elements=MAX_ELEMENTS)


@pytest.mark.parametrize("data", [["false"], [None], ["true", True], [[1.5]]])
def test_bool_data_that_is_not_true_or_false_gets_400(data: list[object]) -> None:
    """numpy read "false" as True and null as False: a client would have been answered for other inputs."""
    shape = [1] * (1 + isinstance(data[0], list)) if len(data) == 1 else [len(data)]
    body = orjson.dumps({"inputs": [{"name": "flag", "datatype": "BOOL", "shape": shape, "data": data}]})
    with pytest.raises(InvalidInput, match="BOOL data must be true or false"):
        decode_infer_request(body, None, max_elements=MAX_ELEMENTS)
    assert decode_plain(body, MAX_ELEMENTS) is None


def as_response(body: bytes) -> bytes:
    """A request body made a response body: what the CLI and Python client read from a server."""
    return body.replace(b'"inputs"', b'"outputs"', 1)


@FUZZ
@given(st.one_of(v2_bodies().map(lambda b: (as_response(b), None)), binary_bodies()))
@example((b'{"outputs": ' + b"[" * 2000 + b"]" * 2000 + b"}", None))
def test_any_response_body_decodes_or_gets_invalid_input(case: tuple[bytes, int | None]) -> None:
    body, json_length = case
    body = as_response(body)
    start = time.perf_counter()
    try:
        decode_infer_response(body, json_length)
    except InvalidInput as exc:
        assert exc.message and "9223372036854775807" not in exc.message
    assert time.perf_counter() - start < FAST_S
