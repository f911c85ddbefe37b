"""The one Open Inference Protocol codec: V2 REST bodies (JSON, or JSON + binary tensor data) ⇄ numpy.

Used by the replica server, the gateway and the CLI client alike, so the wire format is written exactly once.
"""

from __future__ import annotations

import sys
from collections.abc import Container, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from conveyor.errors import InvalidInput, PayloadTooLarge
from conveyor.protocol.datatypes import numpy_dtype, v2_datatype
from conveyor.protocol.tensors import (
    Array,
    binary_size_ok,
    check_shape,
    from_binary,
    from_json,
    to_binary,
    to_json_data,
)
from conveyor.protocol.types import (
    InferRequest,
    InferResponse,
    RequestedOutput,
    RequestInput,
    ResponseOutput,
)
from conveyor.security.limits import DEFAULT_MAX_JSON_DEPTH, depth_over, list_depth, too_deep

_DUMPS_OPTS = orjson.OPT_SERIALIZE_NUMPY
_TENSOR_LISTS = ("inputs", "outputs")
Tensor = tuple[str, str, tuple[int, ...], Array, dict[str, Any]]
BinaryOutputs = bool | Container[str]


def _load_json(body: bytes, json_length: int | None, max_depth: int | None) -> tuple[Any, int]:
    """The JSON document and the offset where binary tensor data starts; past orjson's own depth limit, an
    error naming ``max_depth`` (requests), else orjson's words."""
    view: bytes | memoryview
    if json_length is None:
        start, view = len(body), body
    elif 0 <= json_length <= len(body):
        start, view = json_length, memoryview(body)[:json_length]
    else:
        raise InvalidInput(
            f"Inference-Header-Content-Length {json_length} is outside the {len(body)}-byte body"
        )
    try:
        return orjson.loads(view), start
    except orjson.JSONDecodeError as e:
        if max_depth is not None and "depth limit" in str(e):  # orjson's own stop, at 1024 levels
            raise too_deep("the JSON document", max_depth) from None
        raise InvalidInput(f"malformed JSON: {e}") from None


def _check_depth(doc: dict[str, Any], limit: int) -> None:
    """InvalidInput naming ``limit`` when the request nests deeper. Tensor data are measured along their
    first elements (numpy refuses ragged data), so the check costs a few steps whatever the tensors' size."""
    for key, value in doc.items():  # the document is level 1, its values level 2
        if key not in _TENSOR_LISTS or not isinstance(value, list):
            deep = depth_over(value, limit - 1)
        else:  # a tensor is level 3, its fields level 4
            deep = any(
                depth_over(item, limit - 2)
                if not isinstance(item, dict)
                else any(
                    list_depth(v) > limit - 3 if field == "data" else depth_over(v, limit - 3)
                    for field, v in item.items()
                )
                for item in value
            )
        if deep:
            raise too_deep("the request body", limit)


def _decode_tensors(items: list[Any], kind: str, body: bytes, start: int, max_elements: int) -> list[Tensor]:
    """Check every tensor header (name, datatype, shape, sizes, element limit), then build arrays."""
    headers = []
    total, offset, seen = 0, start, set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput(f"{kind} #{i} must be a JSON object")
        name = item.get("name")
        if not isinstance(name, str):
            raise InvalidInput(f"{kind} #{i} needs a string 'name'")
        where = f"{kind} {name!r}"
        if name in seen:
            raise InvalidInput(f"{where} is given more than once")
        seen.add(name)
        datatype = item.get("datatype")
        if not isinstance(datatype, str):
            raise InvalidInput(f"{where} needs a string 'datatype'")
        try:
            dtype = numpy_dtype(datatype)
        except InvalidInput as e:
            raise InvalidInput(f"{where}: {e}") from None
        if "shape" not in item:
            raise InvalidInput(f"{where} needs a 'shape'")
        shape, count = check_shape(where, item["shape"])
        total += count
        if total > max_elements:
            raise PayloadTooLarge(
                f"{where}: the request's tensors hold {total} elements, the limit is {max_elements}"
            )
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"{where}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is None:
            if "data" not in item:
                raise InvalidInput(f"{where} needs 'data' or a 'binary_data_size' parameter")
        else:
            if "data" in item:
                raise InvalidInput(f"{where} has both 'data' and a 'binary_data_size' parameter")
            size = binary_size_ok(where, datatype, dtype.itemsize, count, size)
            if offset + size > len(body):
                raise InvalidInput(
                    f"{where}: binary_data_size {size} runs past the end of the body "
                    f"({len(body) - offset} bytes left)"
                )
        headers.append((item, name, where, datatype, dtype, shape, count, params, size, offset))
        if size is not None:
            offset += size
    if offset != len(body):
        raise InvalidInput(f"the body has {len(body) - offset} bytes of binary data that no {kind} claims")
    out: list[Tensor] = []
    for item, name, where, datatype, dtype, shape, count, params, size, off in headers:
        if size is None:
            arr = from_json(where, datatype, dtype, shape, count, item["data"])
        else:
            arr = from_binary(where, datatype, dtype, shape, count, body, off, size)
        out.append((name, datatype, shape, arr, params))
    return out


def decode_infer_request(
    body: bytes, json_length: int | None, *, max_elements: int, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> InferRequest:
    """Server side: an inference request body (plus the binary header length, if any) as numpy inputs;
    nothing is allocated for tensors before every limit (depth, elements, sizes) is checked."""
    doc, start = _load_json(body, json_length, max_depth)
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object")
    _check_depth(doc, max_depth)
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("the request needs 'inputs': a non-empty list of tensors")
    tensors = _decode_tensors(raw_inputs, "input", body, start, max_elements)
    req_id = doc.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise InvalidInput(f"'id' must be a string, got {req_id!r}")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be an object")
    return InferRequest(
        inputs=[RequestInput(n, dt, s, a, p) for n, dt, s, a, p in tensors],
        id=req_id,
        parameters=parameters,
        outputs=_decode_requested_outputs(doc.get("outputs")),
    )


def _decode_requested_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects")
    outputs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f"requested output #{i} needs a string 'name'")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"requested output {item['name']!r}: 'parameters' must be an object")
        binary = params.get("binary_data")
        outputs.append(RequestedOutput(item["name"], None if binary is None else bool(binary), params))
    return outputs


def binary_outputs_of(req: InferRequest) -> BinaryOutputs:
    """Which outputs the client wants as binary: ``binary_data`` per output over ``binary_data_output``."""
    default = bool(req.parameters.get("binary_data_output", False))
    if req.outputs is None:
        return default
    return frozenset(o.name for o in req.outputs if (default if o.binary is None else o.binary))


def _encode_tensor(
    where: str,
    t: dict[str, Any],
    arr: Array,
    datatype: str,
    params: Mapping[str, Any],
    binary: bool,
    bufs: list[Any],
) -> dict[str, Any]:
    if binary:
        buf = to_binary(arr, datatype)
        bufs.append(buf)
        t["parameters"] = {**params, "binary_data_size": len(buf)}
    else:
        t["data"] = to_json_data(where, arr, datatype)
        if params:
            t["parameters"] = dict(params)
    return t


def _frame(doc: dict[str, Any], bufs: list[Any]) -> tuple[bytes, int | None]:
    head = orjson.dumps(doc, option=_DUMPS_OPTS)
    if not bufs:
        return head, None
    return b"".join([head, *bufs]), len(head)


def encode_infer_response(
    resp: InferResponse, *, binary_outputs: BinaryOutputs = False
) -> tuple[bytes, int | None]:
    """Server side: the response body and, when any output is binary, the JSON length for the header."""
    bufs: list[Any] = []
    outs = []
    for o in resp.outputs:
        binary = binary_outputs if isinstance(binary_outputs, bool) else o.name in binary_outputs
        t = {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
        outs.append(_encode_tensor(f"output {o.name!r}", t, o.data, o.datatype, o.parameters, binary, bufs))
    doc: dict[str, Any] = {"model_name": resp.model_name}
    if resp.model_version is not None:
        doc["model_version"] = resp.model_version
    if resp.id is not None:
        doc["id"] = resp.id
    if resp.parameters:
        doc["parameters"] = resp.parameters
    doc["outputs"] = outs
    return _frame(doc, bufs)


InputsArg = Mapping[str, Any] | Sequence[tuple[str, Any] | tuple[str, Any, str]]


def encode_infer_request(
    inputs: InputsArg,
    *,
    id: str | None = None,
    outputs: Sequence[str] | None = None,
    binary: bool = False,
    binary_outputs: bool = False,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Client side: a request body from numpy arrays (datatype from dtype unless given), JSON length."""
    items = list(inputs.items()) if isinstance(inputs, Mapping) else list(inputs)
    bufs: list[Any] = []
    tensors = []
    for item in items:
        name, value = item[0], item[1]
        arr = np.asarray(value)
        datatype = item[2] if len(item) > 2 else v2_datatype(arr.dtype)  # type: ignore[misc]
        if datatype != "BYTES" and arr.dtype != numpy_dtype(datatype):
            arr = arr.astype(numpy_dtype(datatype))
        t = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        tensors.append(_encode_tensor(f"input {name!r}", t, arr, datatype, {}, binary, bufs))
    params = dict(parameters or {})
    if binary_outputs:
        params["binary_data_output"] = True
    doc: dict[str, Any] = {}
    if id is not None:
        doc["id"] = id
    if params:
        doc["parameters"] = params
    doc["inputs"] = tensors
    if outputs is not None:
        doc["outputs"] = [{"name": n, "parameters": {"binary_data": binary_outputs}} for n in outputs]
    return _frame(doc, bufs)


def decode_infer_response(body: bytes, json_length: int | None) -> InferResponse:
    """Client side: a response body as numpy outputs (BYTES as ``bytes`` objects)."""
    doc, start = _load_json(body, json_length, None)
    if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list):
        detail = f": {doc['error']}" if isinstance(doc, dict) and "error" in doc else ""
        raise InvalidInput(f"not an inference response{detail}")
    tensors = _decode_tensors(doc["outputs"], "output", body, start, sys.maxsize)
    return InferResponse(
        model_name=str(doc.get("model_name", "")),
        outputs=[ResponseOutput(n, dt, s, a, p) for n, dt, s, a, p in tensors],
        model_version=doc.get("model_version"),
        id=doc.get("id"),
        parameters=doc.get("parameters") or {},
    )
