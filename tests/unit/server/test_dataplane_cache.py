"""DataPlane with a response cache: a repeated request is answered without the batcher, with its own id; each
version has its own cache; off by default."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from conveyor.protocol.codec import decode_infer_response, encode_infer_request
from conveyor.protocol.service import EncodedRequest, EncodedResponse
from conveyor.runtime import OnnxModel
from conveyor.runtime.cache import CacheConfig
from conveyor.server.dataplane import DataPlane
from tests.fixtures.models import build_logreg

X = np.array([[0.5, -1.0, 2.0, 0.25]], np.float32)


@pytest.fixture(scope="module")
def plane(models_dir: Path) -> Iterator[DataPlane]:
    """lr:1 and lr:2 answer differently (other weights)."""
    one, two = build_logreg(models_dir / "c1.onnx", seed=1), build_logreg(models_dir / "c2.onnx", seed=2)
    models = [OnnxModel(p.read_bytes(), name="lr", version=v) for v, p in (("1", one), ("2", two))]
    p = DataPlane(models, max_workers=2, cache=CacheConfig(100, 1 << 20, 60.0))
    yield p
    p.close()


def _request(
    rid: str | None, version: str = "1", x: np.ndarray = X, *, binary: bool = False, fid: str = "front"
) -> EncodedRequest:
    body, json_length = encode_infer_request({"input": x}, id=rid, binary=binary, binary_outputs=binary)
    return EncodedRequest("lr", version, body, json_length, fid)


def _infer(plane: DataPlane, request: EncodedRequest) -> EncodedResponse:
    return asyncio.run(plane.infer(request))


def _runs(plane: DataPlane, version: str) -> int:
    return plane.batcher("lr", version).stats.requests


def test_a_repeated_request_is_answered_from_the_cache_with_its_own_id(plane: DataPlane) -> None:
    x = X + 10
    first = _infer(plane, _request("a", x=x))
    runs = _runs(plane, "1")
    second = _infer(plane, _request("b", x=x))
    assert _runs(plane, "1") == runs  # the model did not run
    assert second.request_id == "b" and second.model_version == "1"
    assert orjson.loads(second.body) == {**orjson.loads(first.body), "id": "b"}
    third = _infer(plane, _request(None, x=x, fid="from-header"))  # no id in the body: the front end's
    assert orjson.loads(third.body)["id"] == "from-header" and _runs(plane, "1") == runs
    cache = plane.cache("lr", "1")
    assert cache is not None and cache.hits >= 2


def test_binary_answers_are_cached_with_their_json_length(plane: DataPlane) -> None:
    x = X + 20
    first = _infer(plane, _request("a", x=x, binary=True))
    runs = _runs(plane, "1")
    second = _infer(plane, _request("bb", x=x, binary=True))
    assert _runs(plane, "1") == runs
    a, b = (
        decode_infer_response(first.body, first.json_length),
        decode_infer_response(second.body, second.json_length),
    )
    assert b.id == "bb" and np.array_equal(a.as_dict()["probabilities"], b.as_dict()["probabilities"])


def test_another_version_never_gets_the_cached_answer_of_the_first(plane: DataPlane) -> None:
    x = X + 30
    old = decode_infer_response(_infer(plane, _request("a", "1", x)).body, None)
    runs = _runs(plane, "2")
    new = decode_infer_response(_infer(plane, _request("b", "2", x)).body, None)
    assert _runs(plane, "2") == runs + 1  # ran on version 2
    assert new.model_version == "2"
    assert not np.allclose(old.as_dict()["probabilities"], new.as_dict()["probabilities"])


def test_the_fast_path_reads_and_fills_the_same_cache(plane: DataPlane) -> None:
    x = X + 40
    cache = plane.cache("lr", "1")
    assert cache is not None
    misses = cache.misses
    first = plane.infer_now(_request("a", x=x))
    if first is None:  # the worker was busy: infer fills the cache instead
        first = _infer(plane, _request("a", x=x))
    assert cache.misses == misses + 1  # once, whichever ran it
    runs = _runs(plane, "1")
    second = plane.infer_now(_request("z", x=x))
    assert second is not None and orjson.loads(second.body)["id"] == "z" and _runs(plane, "1") == runs
    assert cache.misses == misses + 1


def test_a_bad_request_is_refused_as_without_a_cache(plane: DataPlane) -> None:
    bad = EncodedRequest("lr", "1", b'{"id": "q", "inputs": [{"name": "nope"}]}', None, "f")
    for _ in range(2):
        with pytest.raises(Exception, match="datatype"):
            _infer(plane, bad)


def test_no_cache_unless_configured(logreg_onnx: Path) -> None:
    p = DataPlane([OnnxModel(logreg_onnx.read_bytes(), name="lr", version="1")], max_workers=1)
    try:
        assert p.cache("lr") is None
        _infer(p, _request("a")), _infer(p, _request("b"))
        assert _runs(p, "1") == 2
    finally:
        p.close()
