"""Request bodies and response parsing for the two wire formats the bench speaks.

``v2``: the Open Inference Protocol JSON body (flat ``data`` + ``shape``), for Conveyor, MLServer, the lean
app and Ray Serve. ``v2-binary``: the same request with the tensor as raw bytes after the JSON header (the V2
binary tensor data extension, which tritonclient uses by default); answers stay JSON.
``named-json``: BentoML's own JSON API, one key per API parameter holding a nested list,
answered with ``{output name: nested list}``; the same numbers, a different layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

V2 = "v2"
V2_BINARY = "v2-binary"
NAMED_JSON = "named-json"
BENTOML_PARAM = "x"  # the name of the BentoML API's one parameter (bench/peers/bentoml/service.py)


def headers(wire: str, body: bytes) -> dict[str, str]:
    """The request headers a body of this wire format travels with."""
    if wire == V2_BINARY:
        json_len = body.index(b"}]}") + 3  # the JSON header ends where the raw tensor starts
        return {"content-type": "application/octet-stream", "inference-header-content-length": str(json_len)}
    return {"content-type": "application/json"}


def encode(wire: str, input_name: str, array: np.ndarray) -> bytes:
    if wire == V2_BINARY:
        raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        tensor = {
            "name": input_name,
            "shape": list(array.shape),
            "datatype": "FP32",
            "parameters": {"binary_data_size": len(raw)},
        }
        return orjson.dumps({"inputs": [tensor]}) + raw
    if wire == V2:
        tensor = {
            "name": input_name,
            "shape": list(array.shape),
            "datatype": "FP32",
            "data": array.ravel().tolist(),
        }
        return orjson.dumps({"inputs": [tensor]})
    if wire == NAMED_JSON:
        return orjson.dumps({BENTOML_PARAM: array.tolist()})
    raise ValueError(f"unknown wire format {wire!r}")


def decode(wire: str, body: bytes) -> dict[str, np.ndarray]:
    doc: Any = orjson.loads(body)
    if wire in (V2, V2_BINARY):
        return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in doc["outputs"]}
    if wire == NAMED_JSON:
        return {name: np.asarray(value) for name, value in doc.items()}
    raise ValueError(f"unknown wire format {wire!r}")
