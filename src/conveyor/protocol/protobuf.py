"""The gRPC side of the codec: ModelInferRequest ⇄ V2 REST bodies, so every front end feeds one data plane.

Raw contents are copied into the body as binary tensor data, untouched; typed ``contents`` go through numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import orjson

from conveyor.errors import InferenceFailed, InvalidInput
from conveyor.protocol.datatypes import ELEMENT_SIZE, numpy_dtype
from conveyor.protocol.grpc import pb
from conveyor.protocol.tensors import check_shape, from_json, to_binary

_INT64 = range(-(2**63), 2**63)
_UINT64 = range(2**64)
# The InferTensorContents field that carries each datatype; FP16 / BF16 have none (raw contents only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# Parameters the body framing owns: a client's own value would contradict the bytes we append.
_INPUT_FRAMING = "binary_data_size"
_OUTPUT_FRAMING = "binary_data"


def parameters_to_json(params: Mapping[str, Any]) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as JSON parameters; unset entries are left out."""
    out: dict[str, Any] = {}
    for key, p in params.items():
        kind = p.WhichOneof("parameter_choice")
        if kind is not None:
            out[key] = getattr(p, kind)
    return out


def set_parameters(target: Any, params: Mapping[str, Any]) -> None:
    """Fill a protobuf parameter map from JSON parameters (non-scalars travel as JSON strings)."""
    for key, value in params.items():
        p = target[key]
        if isinstance(value, bool):
            p.bool_param = value
        elif isinstance(value, int) and value in _INT64:
            p.int64_param = value
        elif isinstance(value, int) and value in _UINT64:
            p.uint64_param = value
        elif isinstance(value, float):
            p.double_param = value
        elif isinstance(value, str):
            p.string_param = value
        else:
            p.string_param = orjson.dumps(value).decode()


def infer_request_to_body(msg: Any) -> tuple[bytes, int]:
    """A ModelInferRequest as a V2 body: a JSON header asking for binary outputs, then every input's bytes.

    Returns the body and its JSON length (the ``Inference-Header-Content-Length`` of REST).
    """
    if not msg.inputs:
        raise InvalidInput("the request needs at least one input")
    raw = msg.raw_input_contents
    typed = [i.name for i in msg.inputs if i.HasField("contents") and i.contents.ListFields()]
    if raw and typed:
        raise InvalidInput(
            f"input {typed[0]!r} has typed contents but the request also uses raw_input_contents; "
            "send every input one way"
        )
    if raw and len(raw) != len(msg.inputs):
        raise InvalidInput(f"the request has {len(msg.inputs)} inputs but {len(raw)} raw_input_contents")
    headers: list[dict[str, Any]] = []
    bufs: list[Any] = []
    for index, tensor in enumerate(msg.inputs):
        where = f"input {tensor.name!r}"
        shape, count = check_shape(where, list(tensor.shape))
        data = (
            _raw_input(where, tensor.datatype, count, index, raw[index])
            if raw
            else _typed_input(where, tensor, count)
        )
        params = parameters_to_json(tensor.parameters)
        params[_INPUT_FRAMING] = len(data)
        headers.append(
            {"name": tensor.name, "datatype": tensor.datatype, "shape": list(shape), "parameters": params}
        )
        bufs.append(data)
    doc: dict[str, Any] = {}
    if msg.id:
        doc["id"] = msg.id
    doc["parameters"] = {**parameters_to_json(msg.parameters), "binary_data_output": True}
    doc["inputs"] = headers
    if msg.outputs:
        doc["outputs"] = [_requested_output(o) for o in msg.outputs]
    head = orjson.dumps(doc)
    return b"".join([head, *bufs]), len(head)


def _raw_input(where: str, datatype: str, count: int, index: int, data: bytes) -> bytes:
    """Raw contents pass through as they are; only their length is checked against the shape."""
    _dtype(where, datatype)
    size = ELEMENT_SIZE.get(datatype)
    if size is not None and len(data) != count * size:
        raise InvalidInput(
            f"{where}: raw_input_contents[{index}] holds {len(data)} bytes but {count} {datatype} elements "
            f"need {count * size}"
        )
    return data


def _typed_input(where: str, tensor: Any, count: int) -> bytes | memoryview:
    datatype = tensor.datatype
    dtype = _dtype(where, datatype)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"{where}: {datatype} has no typed contents field; send it in raw_input_contents")
    used = [f.name for f, _ in tensor.contents.ListFields()]
    wrong = [f for f in used if f != field]
    if wrong:
        raise InvalidInput(
            f"{where} is {datatype}, which travels in contents.{field}, not contents.{wrong[0]}"
        )
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"{where}: shape {list(tensor.shape)} needs {count} elements, contents.{field} has {len(values)}"
        )
    if datatype == "BYTES":
        arr = np.empty(count, dtype=object)
        arr[:] = list(values)
    else:
        try:
            arr = np.asarray(values, dtype=dtype)
        except (OverflowError, ValueError) as e:
            raise InvalidInput(f"{where}: contents.{field} holds a value outside {datatype} ({e})") from None
    return to_binary(arr, datatype)


def _dtype(where: str, datatype: str) -> np.dtype[Any]:
    try:
        return numpy_dtype(datatype)
    except InvalidInput as e:
        raise InvalidInput(f"{where}: {e}") from None


def _requested_output(o: Any) -> dict[str, Any]:
    params = parameters_to_json(o.parameters)
    params.pop(_OUTPUT_FRAMING, None)  # outputs always come back binary, to be moved into raw_output_contents
    return {"name": o.name, "parameters": params} if params else {"name": o.name}


def body_to_infer_response(
    body: bytes, json_length: int | None, *, model_name: str, model_version: str | None, request_id: str
) -> Any:
    """A V2 response body as a ModelInferResponse; binary outputs go to raw_output_contents as they are."""
    try:
        return _to_response(body, json_length, model_name, model_version, request_id)
    except InvalidInput as e:  # the body came from a data plane, not from the client
        raise InferenceFailed(f"malformed inference response: {e}") from None


def _to_response(
    body: bytes, json_length: int | None, model_name: str, model_version: str | None, request_id: str
) -> Any:
    head, start = _response_head(body, json_length)
    resp = pb.ModelInferResponse(
        model_name=str(head.get("model_name") or model_name),
        model_version=str(head.get("model_version") or model_version or ""),
        id=str(head.get("id") or request_id),
    )
    set_parameters(resp.parameters, head.get("parameters") or {})
    raws: list[bytes] = []
    offset = start
    for item in _outputs_of(head):
        name, datatype = str(item.get("name")), str(item.get("datatype"))
        where = f"output {name!r}"
        shape, count = check_shape(where, item.get("shape"))
        params = dict(item.get("parameters") or {})
        size = params.pop(_INPUT_FRAMING, None)
        if size is None:
            arr = from_json(where, datatype, numpy_dtype(datatype), shape, count, item.get("data"))
            raws.append(bytes(to_binary(arr, datatype)))
        else:
            if type(size) is not int or size < 0 or offset + size > len(body):
                raise InferenceFailed(
                    f"malformed inference response: {where} claims {size!r} bytes past the body"
                )
            raws.append(body[offset : offset + size])
            offset += size
        out = resp.outputs.add(name=name, datatype=datatype, shape=shape)
        set_parameters(out.parameters, params)
    resp.raw_output_contents.extend(raws)
    return resp


def _response_head(body: bytes, json_length: int | None) -> tuple[dict[str, Any], int]:
    start = len(body) if json_length is None else json_length
    try:
        head = orjson.loads(memoryview(body)[:start])
    except orjson.JSONDecodeError as e:
        raise InferenceFailed(f"malformed inference response: {e}") from None
    if not isinstance(head, dict):
        raise InferenceFailed("malformed inference response: not a JSON object")
    return head, start


def _outputs_of(head: dict[str, Any]) -> Iterable[dict[str, Any]]:
    outputs = head.get("outputs")
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InferenceFailed("malformed inference response: 'outputs' is not a list of tensors")
    return outputs
