"""The response cache: LRU order, TTL with an injected clock, the bounds, request keys and answers cut around
their id."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from conveyor.observe.collectors import render
from conveyor.protocol.codec import encode_infer_request, encode_infer_response
from conveyor.protocol.service import EncodedResponse
from conveyor.protocol.types import InferResponse, ResponseOutput
from conveyor.runtime.cache import (
    ENTRY_OVERHEAD_BYTES,
    CacheConfig,
    CachedAnswer,
    ResponseCache,
    cut_answer,
    request_key,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _answer(size: int = 10, expires: float = 1e9) -> CachedAnswer:
    return CachedAnswer(b"h" * size, b"", None, "1", expires)


def _cache(
    entries: int = 3, nbytes: int = 10_000, ttl: float = 30.0, clock: Clock | None = None
) -> ResponseCache:
    return ResponseCache(CacheConfig(entries, nbytes, ttl), clock=clock or Clock(), track=False)


def test_the_least_recently_used_answer_goes_first() -> None:
    cache = _cache(entries=3)
    for key in (b"a", b"b", b"c"):
        assert cache.put(key, _answer())
    assert cache.get(b"a") is not None  # a is now the most recently used: b goes
    cache.put(b"d", _answer())
    assert [k for k in (b"a", b"b", b"c", b"d") if cache.get(k)] == [b"a", b"c", b"d"]
    assert len(cache) == 3
    assert (cache.hits, cache.misses) == (4, 1)


def test_an_answer_expires_ttl_after_it_was_stored() -> None:
    clock = Clock()
    cache = _cache(ttl=30.0, clock=clock)
    cache.put(b"a", _answer(expires=cache.expires()))
    clock.now += 29.9
    assert cache.get(b"a") is not None
    clock.now += 0.1  # reading it did not extend its life
    assert cache.get(b"a") is None
    assert (len(cache), cache.bytes, cache.hits, cache.misses) == (0, 0, 1, 1)


def test_expired_answers_at_the_old_end_go_when_one_is_stored() -> None:
    clock = Clock()
    cache = _cache(entries=10, ttl=5.0, clock=clock)
    cache.put(b"old", _answer(expires=cache.expires()))
    clock.now += 10
    cache.put(b"new", _answer(expires=cache.expires()))
    assert len(cache) == 1
    assert cache.bytes == _answer().nbytes


def test_the_byte_bound_holds_by_pushing_out_the_oldest() -> None:
    one = _answer(100).nbytes
    cache = _cache(entries=100, nbytes=3 * one)
    for key in (b"a", b"b", b"c", b"d"):
        cache.put(key, _answer(100))
    assert cache.bytes == 3 * one
    assert cache.get(b"a") is None and cache.get(b"d") is not None
    cache.put(b"big", _answer(2 * 100 + ENTRY_OVERHEAD_BYTES))  # as big as two: two go
    assert cache.bytes <= 3 * one and len(cache) == 2


def test_an_answer_larger_than_the_bound_is_not_stored_and_nothing_is_pushed_out() -> None:
    cache = _cache(nbytes=1000)
    cache.put(b"a", _answer(10))
    assert not cache.put(b"huge", _answer(1000))
    assert cache.get(b"huge") is None and cache.get(b"a") is not None
    assert cache.bytes == _answer(10).nbytes


def test_storing_a_key_again_replaces_its_answer_and_its_bytes() -> None:
    cache = _cache()
    cache.put(b"a", _answer(10))
    cache.put(b"a", _answer(50))
    assert len(cache) == 1 and cache.bytes == _answer(50).nbytes


def test_bounds_must_be_above_zero() -> None:
    with pytest.raises(ValueError, match="bounds above zero"):
        CacheConfig(0, 10, 1.0)


def _body(rid: str | None, x: list[float], **kw: object) -> bytes:
    body, _ = encode_infer_request({"input": np.array([x], np.float32)}, id=rid, **kw)  # type: ignore[arg-type]
    return body


def test_a_request_is_keyed_by_its_body_without_the_id() -> None:
    a, b = request_key(_body("r1", [1, 2]), None), request_key(_body("r2", [1, 2]), None)
    assert a is not None and b is not None
    assert a.digest == b.digest and (a.body_id, b.body_id) == ("r1", "r2")
    no_id = request_key(_body(None, [1, 2]), None)  # hashed as sent: the same compact JSON, the same key
    assert no_id is not None and no_id.digest == a.digest and no_id.body_id is None


@pytest.mark.parametrize(
    "other",
    [
        _body("r1", [1, 3]),  # data
        _body("r1", [1, 2], outputs=["label"]),  # requested outputs
        _body("r1", [1, 2], binary_outputs=True),  # parameters
        orjson.dumps(
            {"id": "r1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
        ),
        orjson.dumps(
            {"id": "r1", "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 2], "data": [1, 2]}]}
        ),
        orjson.dumps(
            {"id": "r1", "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 1], "data": [1, 2]}]}
        ),
    ],
)
def test_anything_but_the_id_changes_the_key(other: bytes) -> None:
    base, changed = request_key(_body("r1", [1, 2]), None), request_key(other, None)
    assert base is not None and changed is not None and base.digest != changed.digest


def test_binary_data_is_in_the_key_and_the_json_length_cuts_it() -> None:
    x = np.array([[1, 2]], np.float32)
    body, json_length = encode_infer_request({"input": x}, id="r", binary=True)
    other, other_length = encode_infer_request({"input": x + 1}, id="r", binary=True)
    a, b = request_key(body, json_length), request_key(other, other_length)
    assert a is not None and b is not None and a.digest != b.digest
    assert json_length is not None
    shifted = request_key(body, json_length - 1)  # the same bytes, cut elsewhere
    assert shifted is None or shifted.digest != a.digest


@pytest.mark.parametrize("body", [b'{"id": 7, "inputs": []}', b'{"id": "a", "inputs": [', b'{"\\u0069d": 3}'])
def test_a_body_with_an_id_the_codec_would_refuse_is_not_keyed(body: bytes) -> None:
    assert request_key(body, None) is None


def test_an_id_spelled_with_an_escape_is_still_taken_out() -> None:
    a = request_key(b'{"\\u0069d":"x","inputs":[]}', None)
    b = request_key(b'{"id":"y","inputs":[]}', None)
    assert a is not None and b is not None and a.digest == b.digest and a.body_id == "x"


@pytest.mark.parametrize("binary", [False, True])
def test_a_cut_answer_carries_the_new_request_id_byte_for_byte(binary: bool) -> None:
    def encoded(rid: str) -> EncodedResponse:
        out = ResponseOutput("y", "FP32", (1, 2), np.array([[0.5, 1.5]], np.float32))
        body, json_length = encode_infer_response(
            InferResponse("m", [out], model_version="3", id=rid), binary_outputs=binary
        )
        return EncodedResponse(body, json_length, rid, "3")

    cut = cut_answer(encoded("first"), "m", "3", "first", 1e9)
    assert cut is not None
    again = encoded('sécond "one"')
    assert cut.answer('sécond "one"') == (again.body, again.json_length)
    assert cut_answer(encoded("first"), "m", "4", "first", 1e9) is None  # not laid out as expected


def test_caches_are_scraped_as_hits_misses_entries_and_bytes() -> None:
    cache = ResponseCache(CacheConfig(10, 10_000, 30.0), "cached-model", "7")
    cache.put(b"a", _answer(10))
    cache.get(b"a"), cache.get(b"a"), cache.get(b"b")
    text = render().decode()
    assert 'conveyor_cache_requests_total{model="cached-model",result="hit",version="7"} 2.0' in text
    assert 'conveyor_cache_requests_total{model="cached-model",result="miss",version="7"} 1.0' in text
    assert 'conveyor_cache_entries{model="cached-model",version="7"} 1.0' in text
    assert f'conveyor_cache_bytes{{model="cached-model",version="7"}} {float(_answer(10).nbytes)}' in text


def test_a_miss_left_uncounted_is_counted_once_by_missed() -> None:
    cache = _cache()
    assert cache.get(b"a", count_miss=False) is None and cache.misses == 0
    cache.missed()
    assert cache.misses == 1


def test_a_closed_cache_holds_nothing_and_leaves_the_scrape() -> None:
    cache = ResponseCache(CacheConfig(10, 10_000, 30.0), "closed-model", "1")
    cache.put(b"a", _answer())
    assert 'model="closed-model"' in render().decode()
    cache.close()
    assert len(cache) == 0 and cache.bytes == 0
    assert 'model="closed-model"' not in render().decode()
