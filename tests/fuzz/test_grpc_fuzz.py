"""The gRPC front end's parser under hypothesis: any ModelInferRequest becomes a V2 body the codec decodes,
or InvalidInput (INVALID_ARGUMENT) — the same guarantee as REST, through the protobuf conversion."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from conveyor.errors import InvalidInput
from conveyor.protocol.codec import decode_infer_request
from conveyor.protocol.grpc import pb
from conveyor.protocol.protobuf import CONTENTS_FIELD, infer_request_to_body
from tests.fuzz.strategies import DATATYPES, FUZZ

INT64 = st.integers(-(2**63), 2**63 - 1)
CONTENTS: dict[str, st.SearchStrategy[Any]] = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": INT64,
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=8),
}
PARAMETERS = st.dictionaries(
    st.sampled_from(["binary_data_size", "binary_data", "x", ""]),
    st.one_of(st.booleans(), INT64, st.text(max_size=5), st.floats()),
    max_size=2,
)


def _set_parameters(target: Any, params: dict[str, Any]) -> None:
    for key, value in params.items():
        p = target[key]
        if isinstance(value, bool):
            p.bool_param = value
        elif isinstance(value, int):
            p.int64_param = value
        elif isinstance(value, float):
            p.double_param = value
        else:
            p.string_param = value


@st.composite
def requests(draw: st.DrawFn) -> Any:
    msg = pb.ModelInferRequest(model_name="m", id=draw(st.text(max_size=5)))
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        tensor = msg.inputs.add()
        tensor.name = draw(st.sampled_from(["x", "y", "é"]))
        tensor.datatype = draw(st.sampled_from([*DATATYPES, "INT8", "FP8", ""]))
        tensor.shape.extend(
            draw(st.one_of(st.lists(st.integers(0, 4), max_size=3), st.lists(INT64, max_size=3)))
        )
        _set_parameters(tensor.parameters, draw(PARAMETERS))
        if raw:
            msg.raw_input_contents.append(draw(st.binary(max_size=40)))
        else:
            field = draw(st.sampled_from([CONTENTS_FIELD.get(tensor.datatype, "fp32_contents"), *CONTENTS]))
            getattr(tensor.contents, field).extend(draw(st.lists(CONTENTS[field], max_size=8)))
    if draw(st.booleans()):  # one raw content too many or too few
        msg.raw_input_contents.append(b"\x00" * 4)
    for name in draw(st.lists(st.sampled_from(["y", "z"]), max_size=2)):
        out = msg.outputs.add()
        out.name = name
        _set_parameters(out.parameters, draw(PARAMETERS))
    _set_parameters(msg.parameters, draw(PARAMETERS))
    return msg


def _empty_but_huge() -> Any:
    msg = pb.ModelInferRequest(model_name="m")
    tensor = msg.inputs.add(name="x", datatype="FP32")
    tensor.shape.extend([0, 2**62])  # numpy's "array is too big": a ValueError, an INTERNAL error, before
    return msg


@FUZZ
@given(requests())
@example(_empty_but_huge())
def test_any_grpc_infer_request_decodes_or_gets_invalid_argument(msg: Any) -> None:
    try:
        body, json_length = infer_request_to_body(msg)
        decode_infer_request(body, json_length, max_elements=1000)
    except InvalidInput as exc:
        assert exc.message
