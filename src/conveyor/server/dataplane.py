"""The transport-neutral replica data plane: served models by (name, version), health, metadata, inference.

REST and gRPC front ends are thin layers over this. Each served version has a dynamic batcher (its own worker
thread); small bodies are decoded and encoded on the event loop, big ones in a thread pool. The plane owns its
lifecycle (``async with plane:``), so whoever serves it (the REST app, a channel replica, a gateway holding it
in-process) stops it the same way and no caller needs a web app to reach it.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from conveyor.protocol.codec import (
    BinaryOutputs,
    binary_outputs_of,
    decode_infer_request,
    encode_infer_response,
)
from conveyor.protocol.plain import decode_plain, encode_plain
from conveyor.protocol.service import EncodedRequest, EncodedResponse, server_metadata
from conveyor.protocol.types import InferRequest, InferResponse, ResponseOutput
from conveyor.runtime import Batcher, BatchingConfig, OnnxModel
from conveyor.runtime.cache import CacheConfig, RequestKey, ResponseCache, cut_answer, request_key
from conveyor.security.limits import DEFAULT_MAX_JSON_DEPTH
from conveyor.versions import VersionIndex

if TYPE_CHECKING:
    from conveyor.settings import Settings

T = TypeVar("T")
# Bodies and outputs up to this size are decoded / encoded on the event loop: cheaper than a thread hop, and
# JSON decoding holds the GIL anyway (the 237 KB CNN body: 773 vs 666 req/s at c=1, 1,081 vs 992 at c=32 with
# hey on 2 cores). Bigger ones go to the pool so one huge body cannot stall the loop for long.
INLINE_CODEC_BYTES = 1024 * 1024


class DataPlane:
    """The models one replica serves; the default version of a name is the highest one served."""

    def __init__(
        self,
        models: Sequence[OnnxModel],
        *,
        max_elements: int = 16 * 1024 * 1024,
        max_depth: int = DEFAULT_MAX_JSON_DEPTH,
        max_workers: int | None = None,
        batching: BatchingConfig | None = None,
        cache: CacheConfig | None = None,
    ) -> None:
        """``batching`` applies to models whose own ``batching`` is None (default: BatchingConfig());
        ``cache``: a response cache of these bounds for each served version (default: none)."""
        self.max_elements = max_elements
        self.max_depth = max_depth
        self._index: VersionIndex[OnnxModel] = VersionIndex((m.name, m.version, m) for m in models)
        self._models = self._index.items()
        workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="conveyor-infer")
        default = batching or BatchingConfig()
        self._batchers = {key: Batcher(m, m.batching or default) for key, m in self._models.items()}
        self._served: VersionIndex[Batcher] = VersionIndex(
            (m.name, m.version, self._batchers[k]) for k, m in self._models.items()
        )
        # Keyed by batcher: the one look-up infer makes already gives it. Empty when off (the default).
        self._caches: dict[Batcher, ResponseCache] = (
            {}
            if cache is None
            else {
                b: ResponseCache(cache, b.model.name, b.model.version or "") for b in self._batchers.values()
            }
        )

    @classmethod
    def from_settings(cls, models: Sequence[OnnxModel], settings: Settings) -> DataPlane:
        """The plane a replica serves: element and depth limits and default batching from ``settings``."""
        return cls(
            models,
            max_elements=settings.max_elements,
            max_depth=settings.max_json_depth,
            batching=BatchingConfig.from_settings(settings),
            cache=CacheConfig.from_settings(settings),
        )

    async def __aenter__(self) -> Self:
        # Sessions and batchers are ready once the plane is built: serving may start at once.
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def models(self) -> list[OnnxModel]:
        return list(self._models.values())

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        # Sessions are built before the plane exists, so every served model is ready once it does.
        return bool(self._models)

    def server_metadata(self) -> dict[str, Any]:
        return server_metadata()

    def model(self, name: str, version: str | None = None) -> OnnxModel:
        """The served model; NotFound naming what is served instead."""
        return self._index.get(name, version)

    def batcher(self, name: str, version: str | None = None) -> Batcher:
        """The batcher of a served model (its config, stats and queue)."""
        return self._served.get(name, version)

    def cache(self, name: str, version: str | None = None) -> ResponseCache | None:
        """The response cache of a served model, None when the plane has none."""
        return self._caches.get(self._served.get(name, version))

    async def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        meta = self.model(name, version).metadata()
        meta["versions"] = self._index.versions(name)
        return meta

    async def model_ready(self, name: str, version: str | None = None) -> dict[str, Any]:
        self.model(name, version)
        return {"name": name, "ready": True}

    def authorize(self, name: str, version: str | None, authorization: str | None) -> None:
        """Anyone: a replica is reached through its gateway, which checked the token, over a socket in the
        home's private run directory (docs/security.md)."""

    def admit(self, name: str, version: str | None) -> None:
        """Overloaded if the version's queue is full and no room can be made (Batcher.admit)."""
        batcher = self._served.find(name, version)
        if batcher is not None:
            batcher.admit()

    async def infer(self, request: EncodedRequest) -> EncodedResponse:
        """Decode, hand to the model's batcher, encode; the loop runs ONNX Runtime only for a fast model."""
        batcher = self._served.get(request.model, request.version)  # one look-up: the batcher holds its model
        small = len(request.body) <= INLINE_CODEC_BYTES
        cache = self._caches.get(batcher) if self._caches else None
        key = None
        if cache is not None:  # before admit: a cached answer needs no room in the queue
            key = (
                request_key(request.body, request.json_length)
                if small
                else await self.run(request_key, request.body, request.json_length)
            )
            if key is not None and (hit := _hit(cache, key, request)) is not None:
                return hit
        batcher.admit()  # before decoding: a refusal costs no parsing
        model = batcher.model
        plain = None
        if small and request.json_length is None:
            plain = decode_plain(request.body, self.max_elements, self.max_depth)
        binary: BinaryOutputs = False
        if plain is not None:  # the commonest request: no general codec (protocol/plain.py)
            inputs, body_id = plain
            rid = request.request_id if body_id is None else body_id
            results = await batcher.submit(inputs)
        else:
            req = self._decode(request) if small else await self.run(self._decode, request)
            rid, binary = req.id or "", binary_outputs_of(req)  # _decode gave the request an id
            inputs = {i.name: i.data for i in req.inputs}
            results = await batcher.submit(inputs, req.output_names())
        if model.observer is not None:  # drift, the inference log: a countdown here, the work elsewhere
            model.observer.observe(rid, inputs, results)
        inline = sum(a.nbytes for a in results.values()) <= INLINE_CODEC_BYTES
        if inline:
            answer = _encode(model, request, rid, results, binary, plain=plain is not None)
        else:
            resp = _response(model, rid, results)
            out, json_len = await self.run(encode_infer_response, resp, binary_outputs=binary)
            answer = EncodedResponse(out, json_len, rid or request.request_id, model.version)
        if key is not None:
            _store(cache, key, model, rid, answer)
        return answer

    def infer_now(self, request: EncodedRequest) -> EncodedResponse | None:
        """``infer`` on the calling thread for a request its caller knows arrived alone: a plain JSON body
        (protocol/plain.py) for a model whose runs are short, answered without a task or a loop pass.
        None when it is not such a request, or the model's worker is busy: then ``infer`` it. Errors are
        ``infer``'s, raised here."""
        batcher = self._served.get(request.model, request.version)
        if len(request.body) > INLINE_CODEC_BYTES or request.json_length is not None:
            return None
        cache = self._caches.get(batcher) if self._caches else None
        key = None
        if cache is not None:  # a miss is counted once the request runs here; else ``infer`` counts it
            key = request_key(request.body, None)
            if key is not None and (hit := _hit(cache, key, request, count_miss=False)) is not None:
                return hit
        plain = decode_plain(request.body, self.max_elements, self.max_depth)
        if plain is None:
            return None
        inputs, body_id = plain
        results = batcher.run_now(inputs)
        if results is None:
            return None
        rid = request.request_id if body_id is None else body_id
        if batcher.model.observer is not None:
            batcher.model.observer.observe(rid, inputs, results)
        # Alone, so whatever the outputs' size nobody waits behind their encoding.
        answer = _encode(batcher.model, request, rid, results, False, plain=True)
        if cache is not None and key is not None:
            cache.missed()
            _store(cache, key, batcher.model, rid, answer)
        return answer

    async def drain(self) -> None:
        """Wait until every accepted request has been answered (for a graceful stop)."""
        for b in self._batchers.values():
            await b.drain()

    def _decode(self, request: EncodedRequest) -> InferRequest:
        req = decode_infer_request(
            request.body, request.json_length, max_elements=self.max_elements, max_depth=self.max_depth
        )
        if req.id is None:
            req.id = request.request_id
        return req

    def infer_encoded(self, model: OnnxModel, request: EncodedRequest) -> EncodedResponse:
        """Decode, run and encode in the calling thread, bypassing the batcher (tools and tests)."""
        req = self._decode(request)
        resp = self.infer_sync(model, req)
        out, json_len = encode_infer_response(resp, binary_outputs=binary_outputs_of(req))
        return EncodedResponse(out, json_len, req.id or request.request_id, model.version)

    def infer_sync(self, model: OnnxModel, request: InferRequest) -> InferResponse:
        """Run one decoded request on ``model`` in the calling thread."""
        results = model.predict({i.name: i.data for i in request.inputs}, request.output_names())
        return _response(model, request.id, results)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in the codec pool (big bodies), off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Run what is queued, then stop the batcher threads and the pool."""
        for b in self._batchers.values():
            b.close()
        for c in self._caches.values():
            c.close()
        self._pool.shutdown(wait=True)
        for m in self._models.values():
            if m.observer is not None:
                m.observer.close()


def _hit(
    cache: ResponseCache, key: RequestKey, request: EncodedRequest, *, count_miss: bool = True
) -> EncodedResponse | None:
    """The cached answer to ``request`` with its own id (the body's, else the front end's), or None."""
    found = cache.get(key.digest, count_miss=count_miss)
    if found is None:
        return None
    rid = request.request_id if key.body_id is None else key.body_id
    body, json_length = found.answer(rid)
    return EncodedResponse(body, json_length, rid or request.request_id, found.model_version)


def _store(
    cache: ResponseCache | None, key: RequestKey, model: OnnxModel, rid: str, answer: EncodedResponse
) -> None:
    if cache is not None and (cut := cut_answer(answer, model.name, model.version, rid, cache.expires())):
        cache.put(key.digest, cut)


def _response(model: OnnxModel, rid: str | None, results: dict[str, Any]) -> InferResponse:
    types = model.output_datatypes
    return InferResponse(
        model_name=model.name,
        model_version=model.version,
        id=rid,
        outputs=[ResponseOutput(n, types[n], a.shape, a) for n, a in results.items()],
    )


def _encode(
    model: OnnxModel,
    request: EncodedRequest,
    rid: str,
    results: dict[str, Any],
    binary: BinaryOutputs,
    *,
    plain: bool,
) -> EncodedResponse:
    """The answer, encoded on the calling thread: without the general codec for a plain request when its
    outputs allow (protocol/plain.py), else with it."""
    if plain:
        answer = encode_plain(model.name, model.version, rid, results, model.output_datatypes)
        if answer is not None:
            return EncodedResponse(answer, None, rid or request.request_id, model.version)
    out, json_len = encode_infer_response(_response(model, rid, results), binary_outputs=binary)
    return EncodedResponse(out, json_len, rid or request.request_id, model.version)
