"""The commonest V2 request, decoded and answered without the general codec's generality.

Most requests are JSON only: an optional ``id`` and ``inputs`` whose tensors each carry a name, a numeric
datatype, a shape and ``data`` — no binary tensors, no requested outputs, no parameters. For a small model the
general codec (codec.py), which handles every form the protocol allows, cost as much as the inference itself.
Here such a request is recognised with a few type checks and decoded with the same tensor functions; anything
else — and anything wrong — returns None, so the general codec decides and words the error. Answers are the
general encoder's byte for byte (tests/unit/protocol/test_plain.py compares them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from conveyor.errors import ConveyorError
from conveyor.protocol.datatypes import V2_TO_NUMPY
from conveyor.protocol.tensors import Array, check_shape, from_json, to_json_data
from conveyor.security.limits import DEFAULT_MAX_JSON_DEPTH, list_depth

_TENSOR_KEYS = {"name", "datatype", "shape", "data"}
_DOC_KEYS = ({"inputs"}, {"inputs", "id"})
_NUMERIC = {name: dt for name, dt in V2_TO_NUMPY.items() if name != "BYTES"}
_DUMPS_OPTS = orjson.OPT_SERIALIZE_NUMPY


def decode_plain(
    body: bytes, max_elements: int, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> tuple[dict[str, Array], str | None] | None:
    """(inputs by name, the body's ``id``) of a plain JSON request, or None for the general codec."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or doc.keys() not in _DOC_KEYS:
        return None
    rid = doc.get("id")
    items = doc["inputs"]
    if (rid is not None and type(rid) is not str) or type(items) is not list or not items:
        return None
    inputs: dict[str, Array] = {}
    total = 0
    try:
        for item in items:
            if type(item) is not dict or item.keys() != _TENSOR_KEYS:
                return None
            name, datatype = item["name"], item["datatype"]
            dtype = _NUMERIC.get(datatype) if type(datatype) is str else None
            if type(name) is not str or dtype is None or name in inputs:
                return None
            where = f"input {name!r}"
            shape, count = check_shape(where, item["shape"])
            total += count
            if total > max_elements or 3 + list_depth(item["data"]) > max_depth:  # as codec._check_depth
                return None
            inputs[name] = from_json(where, datatype, dtype, shape, count, item["data"])
    except ConveyorError:  # the general codec checks every header before any data: its error is the one
        return None
    return inputs, rid


def encode_plain(
    model_name: str,
    model_version: str | None,
    rid: str,
    results: Mapping[str, Array],
    datatypes: Mapping[str, str],
) -> bytes | None:
    """The JSON answer for ``results``, or None when an output needs the general encoder (BYTES)."""
    outputs = []
    for name, arr in results.items():
        datatype = datatypes[name]
        if datatype not in _NUMERIC:
            return None
        data = to_json_data(name, arr, datatype)
        outputs.append({"name": name, "datatype": datatype, "shape": list(arr.shape), "data": data})
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    doc["id"] = rid
    doc["outputs"] = outputs
    return orjson.dumps(doc, option=_DUMPS_OPTS)
