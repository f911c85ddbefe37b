"""The response cache: a model version's encoded answers by request, bounded in entries and bytes, with a TTL.

A request is identified by its body without its ``id``: the inputs as sent (names, datatypes, shapes, data or
binary bytes), the requested outputs and the parameters — everything that decides the answer's bytes. The
cache belongs to one served version, so a new version starts with an empty one and never answers with an old
version's outputs. A hit costs a hash of the body and a join of the stored answer around the new request's id:
no decoding to numpy, no batcher, no model run (docs/serving.md, Response cache).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from conveyor.observe.collectors import CacheSnapshot, track_cache, untrack_cache

if TYPE_CHECKING:
    from conveyor.protocol.service import EncodedResponse
    from conveyor.settings import Settings

ENTRY_OVERHEAD_BYTES = 200
"""Counted for each entry besides its answer's bytes: the key, the entry and the dict's slot (CPython)."""


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Bounds of one version's cache: ``max_entries`` answers, ``max_bytes`` in all, each for ``ttl_s``."""

    max_entries: int
    max_bytes: int
    ttl_s: float

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.max_bytes < 1 or self.ttl_s <= 0:
            raise ValueError(f"a response cache needs bounds above zero, got {self}")

    @classmethod
    def from_settings(cls, settings: Settings) -> CacheConfig | None:
        """The configured cache, or None when it is off (``cache_max_entries`` 0, the default)."""
        if settings.cache_max_entries <= 0:
            return None
        return cls(settings.cache_max_entries, settings.cache_max_bytes, settings.cache_ttl_s)


@dataclass(frozen=True, slots=True)
class RequestKey:
    """What identifies a request's answer (``digest``) and the id its body gave, if any."""

    digest: bytes
    body_id: str | None


def request_key(body: bytes, json_length: int | None) -> RequestKey | None:
    """The key of a V2 REST request body (JSON, then ``json_length`` set: binary tensor data), or None when
    it cannot be cached: not a JSON object, or an ``id`` that is not a string (the codec words the error).

    A body with no ``id`` (and no escape that could spell one) is hashed as it is; otherwise the JSON is
    parsed, the id taken out and the rest written back compactly before hashing. Two bodies get one key
    only when they say the same apart from the id; the same request written differently (spaces, key
    order, 1 and 1.0, JSON and binary data) may get another key — a miss, never a wrong answer."""
    end = len(body) if json_length is None else json_length
    if not 0 <= end <= len(body):
        return None
    head = body if json_length is None else body[:end]  # the JSON only: bytes, as ``in`` needs
    body_id = None
    if b'"id"' in head or b"\\" in head:  # a JSON key "id" can only be written so
        try:
            doc = orjson.loads(head)
        except orjson.JSONDecodeError:
            return None
        if type(doc) is not dict:
            return None
        body_id = doc.pop("id", None)
        if body_id is not None and type(body_id) is not str:
            return None
        head = orjson.dumps(doc)
    # The JSON's length first, so the same bytes cut in two places (JSON | binary) never share a key.
    h = hashlib.blake2b(len(head).to_bytes(8, "little"), digest_size=16)
    h.update(head)
    if end < len(body):
        h.update(memoryview(body)[end:])
    return RequestKey(h.digest(), body_id)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An encoded answer cut around its ``id`` value: ``head`` + the id as JSON + ``tail``."""

    head: bytes
    tail: bytes
    json_length: int | None  # of head + tail's JSON, without the id; None: JSON only
    model_version: str | None
    expires: float

    @property
    def nbytes(self) -> int:
        return len(self.head) + len(self.tail) + ENTRY_OVERHEAD_BYTES

    def answer(self, request_id: str) -> tuple[bytes, int | None]:
        """The body and JSON length of this answer to the request ``request_id``."""
        rid = orjson.dumps(request_id)
        json_length = None if self.json_length is None else self.json_length + len(rid)
        return b"".join((self.head, rid, self.tail)), json_length


def cut_answer(
    response: EncodedResponse, model_name: str, model_version: str | None, rid: str, expires: float
) -> CachedAnswer | None:
    """``response`` (whose ``id`` is ``rid``) cut around its id, or None when it is not laid out as the
    codec writes answers: ``{"model_name":..,["model_version":..,]"id":..,...}``."""
    start = {"model_name": model_name}
    if model_version is not None:
        start["model_version"] = model_version
    head = orjson.dumps(start)[:-1] + b',"id":'
    rid_json = orjson.dumps(rid)
    body = response.body
    if not body.startswith(head) or body[len(head) : len(head) + len(rid_json)] != rid_json:
        return None
    tail = body[len(head) + len(rid_json) :]
    json_length = None if response.json_length is None else response.json_length - len(rid_json)
    return CachedAnswer(head, tail, json_length, response.model_version, expires)


class ResponseCache:
    """One model version's answers: least recently used first out, each dropped ``ttl_s`` after it was
    stored; at most ``max_entries`` of them and ``max_bytes`` of answers. Every operation is O(1) (an
    ordered dict) under a lock taken once per call, so any thread may use it and a scrape may read it."""

    def __init__(
        self,
        config: CacheConfig,
        model: str = "",
        version: str = "",
        *,
        clock: Callable[[], float] = time.monotonic,
        track: bool = True,
    ) -> None:
        self.config = config
        self.model, self.version = model, version
        self._clock = clock
        self._entries: OrderedDict[bytes, CachedAnswer] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        if track:  # conveyor_cache_* (observe/collectors.py)
            track_cache(self)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, *, count_miss: bool = True) -> CachedAnswer | None:
        """The live answer under ``key`` (now the most recently used), counted as a hit; else a miss, counted
        unless ``count_miss`` is false (a caller that may ask again for the same request counts it then)."""
        now = self._clock()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found.expires <= now:
                self._remove(key, found)
                found = None
            if found is None:
                self.misses += count_miss
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def missed(self) -> None:
        """Count a miss that ``get(count_miss=False)`` left uncounted."""
        with self._lock:
            self.misses += 1

    def expires(self) -> float:
        """When an answer stored now expires (the time ``put`` wants)."""
        return self._clock() + self.config.ttl_s

    def put(self, key: bytes, answer: CachedAnswer) -> bool:
        """Store ``answer``, dropping the least recently used (and expired ones at that end) until both bounds
        hold; False, storing nothing, for an answer bigger than ``max_bytes`` by itself."""
        size = answer.nbytes
        if size > self.config.max_bytes:
            return False
        now = self._clock()
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            entries = self._entries
            while entries and (
                len(entries) >= self.config.max_entries
                or self.bytes + size > self.config.max_bytes
                or next(iter(entries.values())).expires <= now
            ):
                _, dropped = entries.popitem(last=False)
                self.bytes -= dropped.nbytes
            entries[key] = answer
            self.bytes += size
        return True

    def close(self) -> None:
        """Drop every answer and leave the scrape (its version stopped serving here)."""
        with self._lock:
            self._entries.clear()
            self.bytes = 0
        untrack_cache(self)

    def _remove(self, key: bytes, entry: CachedAnswer) -> None:
        del self._entries[key]
        self.bytes -= entry.nbytes

    def metrics_snapshot(self) -> CacheSnapshot:
        with self._lock:
            return CacheSnapshot(
                self.model, self.version, self.hits, self.misses, len(self._entries), self.bytes
            )
