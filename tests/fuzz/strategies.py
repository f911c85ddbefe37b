"""Hypothesis strategies for the fuzz tests: JSON values, near-valid V2 requests and their mutations, specs.

Every fuzz test runs under ``FUZZ`` (or ``FUZZ_SERVER`` over sockets): a fixed number of examples,
derandomized and without an example database, so a run is the same on every machine and the set stays fast.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=100,
    deadline=5000,  # ms per example (each takes a few): a hang fails here, a loaded CI machine does not
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
FUZZ_SERVER = settings(FUZZ, max_examples=60, deadline=10_000)

DEEP = "@@deep:"  # a string the fuzzed document holds where dumps nests lists that deep
DATATYPES = ["BOOL", "UINT8", "INT32", "INT64", "UINT64", "FP16", "FP32", "FP64", "BYTES"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
dims = st.one_of(
    st.integers(min_value=0, max_value=4),
    st.integers(min_value=-3, max_value=-1),
    st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, 10**30]),
)
shapes = st.one_of(st.lists(dims, max_size=4), json_values)


def nested(depth: int, leaf: Any = 1) -> Any:
    """``leaf`` inside ``depth`` lists."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def tensor_data(draw: st.DrawFn, count: int) -> Any:
    """Data for ``count`` elements: flat, nested in rows, of any element type, sometimes miscounted."""
    element = draw(st.sampled_from([st.integers(-300, 300), st.floats(), st.booleans(), st.text(max_size=4)]))
    flat = draw(st.lists(element, min_size=count, max_size=count)) if count <= 16 else [0] * min(count, 64)
    return draw(
        st.sampled_from(
            [
                flat,
                [flat[i : i + 2] for i in range(0, len(flat), 2)],
                flat[:-1],
                [*flat, flat[0] if flat else 0],
                nested(draw(st.integers(1, 70)), flat[0] if flat else 0),
                flat[0] if flat else None,
            ]
        )
    )


@st.composite
def v2_tensors(draw: st.DrawFn, binary: bool = False) -> dict[str, Any]:
    """A near-valid tensor header: JSON ``data``, or a ``binary_data_size`` (the right one or another)."""
    small = st.lists(st.integers(0, 4), max_size=3)
    shape = draw(
        st.one_of(
            small,
            small.map(lambda s: [0, *s, 2**62]),  # empty, yet too large for numpy
            st.lists(st.just(1), min_size=60, max_size=70),  # around numpy's 64 dimensions
        )
    )
    count = math.prod(shape)
    datatype = draw(st.sampled_from(DATATYPES))
    names = ["input", "x", "k", "text", "flag", "half", "é\u0000"]
    t: dict[str, Any] = {"name": draw(st.sampled_from(names))}
    t["datatype"], t["shape"] = datatype, shape
    if binary:
        size = count * 4 if datatype in ("BYTES", "FP32", "INT32") else count * 8
        t["parameters"] = {"binary_data_size": draw(st.one_of(st.just(size), st.integers(-5, 200)))}
    else:
        t["data"] = draw(tensor_data(count))
    return t


def _mutate(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """Replace, drop or add one field of the document or of one of its tensors."""
    inputs = doc.get("inputs")
    targets = [doc, *[t for t in inputs if isinstance(t, dict)]] if isinstance(inputs, list) else [doc]
    target = draw(st.sampled_from(targets))
    keys = [*target, "parameters", "outputs", "id", "extra"]
    key = draw(st.sampled_from(keys))
    action = draw(st.sampled_from(["replace", "drop", "deep"]))
    if action == "drop":
        target.pop(key, None)
    elif action == "deep":  # spliced in by dumps: orjson and json refuse to write such depths
        target[key] = f"{DEEP}{draw(st.integers(1, 1100))}"
    else:
        target[key] = draw(st.one_of(json_values, shapes))
    return doc


@st.composite
def v2_documents(draw: st.DrawFn, binary: bool = False) -> dict[str, Any]:
    """A V2 request document, valid or mutated up to three times."""
    doc: dict[str, Any] = {"inputs": draw(st.lists(v2_tensors(binary), min_size=1, max_size=3))}
    if draw(st.booleans()):
        doc["id"] = draw(st.text(max_size=8))
    if draw(st.booleans()):
        binary_out = draw(st.booleans())
        doc["outputs"] = [{"name": n, "parameters": {"binary_data": binary_out}} for n in ("label", "y")]
    for _ in range(draw(st.integers(0, 3))):
        doc = _mutate(draw, doc)
    return doc


def dumps(doc: Any, nan_as_json: bool) -> bytes:
    """orjson (NaN and infinity become null) or json (they become the non-JSON NaN / Infinity), with each
    ``DEEP`` marker replaced by that many nested lists."""
    try:
        body = json.dumps(doc).encode() if nan_as_json else orjson.dumps(doc)
    except TypeError:  # orjson: an integer past 64 bits
        body = json.dumps(doc).encode()
    return re.sub(
        rb'"' + DEEP.encode() + rb'(\d+)"', lambda m: b"[" * int(m[1]) + b"1" + b"]" * int(m[1]), body
    )


@st.composite
def v2_bodies(draw: st.DrawFn) -> bytes:
    """A JSON request body: a near-valid document serialized one way or another, or raw bytes."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    return dumps(draw(v2_documents()), draw(st.booleans()))


@st.composite
def binary_bodies(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """(body, Inference-Header-Content-Length): a JSON header with binary tensors, the length true or not."""
    head = dumps(draw(v2_documents(binary=True)), False)
    tail = draw(st.binary(max_size=160))
    body = head + tail
    length = draw(
        st.one_of(
            st.just(len(head)),
            st.none(),
            st.integers(-10, len(body) + 10),
            st.sampled_from([2**63, -(2**63), 2**64]),
        )
    )
    return body, length


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "tiny"},
        "spec": {"model": "tiny@prod", "replicas": 1},
    }


@st.composite
def spec_documents(draw: st.DrawFn) -> Any:
    """A Deployment document with up to three fields replaced (anywhere), or any JSON value."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    doc = deployment()
    for _ in range(draw(st.integers(0, 3))):
        target = draw(
            st.sampled_from([d for d in (doc, doc["metadata"], doc["spec"]) if isinstance(d, dict)])
        )
        keys = [*target, "autoscaling", "rollout", "batching", "placement", "labels"]
        key = draw(st.sampled_from([*keys, draw(st.text(max_size=6))]))
        if draw(st.integers(0, 5)) == 0:
            target[key] = nested(draw(st.integers(1, 200)), {})
        else:
            target[key] = draw(json_values)
    return doc
