"""DataPlane: versions and defaults, NotFound messages, metadata, inference in the pool; the HTTP table."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from conveyor.errors import (
    Conflict,
    ConveyorError,
    InferenceFailed,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from conveyor.frontend.http_errors import status_for
from conveyor.protocol.types import InferRequest, RequestInput
from conveyor.runtime import OnnxModel
from conveyor.server.dataplane import DataPlane


@pytest.fixture(scope="module")
def plane(logreg_onnx: Path) -> DataPlane:
    data = logreg_onnx.read_bytes()
    models = [OnnxModel(data, name="lr", version=v) for v in ("2", "10", "9")]
    return DataPlane([*models, OnnxModel(data, name="plain")], max_workers=2)


def _request(n: int = 2) -> InferRequest:
    x = np.ones((n, 4), np.float32)
    return InferRequest(inputs=[RequestInput("input", "FP32", x.shape, x)], id="abc")


def test_default_version_is_the_highest_numerically(plane: DataPlane) -> None:
    assert plane.model("lr").version == "10"
    assert plane.model("lr", "9").version == "9"
    assert asyncio.run(plane.model_metadata("lr"))["versions"] == ["2", "9", "10"]
    assert plane.model("plain").version is None


def test_unknown_model_and_version_name_what_is_served(plane: DataPlane) -> None:
    with pytest.raises(NotFound, match=r"model 'nope' is not served here \(served: lr, plain\)"):
        plane.model("nope")
    with pytest.raises(NotFound, match=r"model 'lr' has no version '3' here \(served versions: 2, 9, 10\)"):
        asyncio.run(plane.model_ready("lr", "3"))


def test_same_version_twice_is_a_conflict(logreg_onnx: Path) -> None:
    m = OnnxModel(logreg_onnx.read_bytes(), name="lr", version="1")
    with pytest.raises(Conflict):
        DataPlane([m, m])


def test_server_metadata_advertises_binary_tensor_data(plane: DataPlane) -> None:
    meta = plane.server_metadata()
    assert meta["name"] == "conveyor"
    assert "binary_tensor_data" in meta["extensions"]
    assert plane.live() and plane.ready()


def test_infer_runs_in_the_pool_and_echoes_id_and_version(plane: DataPlane) -> None:
    threads: list[str] = []

    def spy(model: OnnxModel, req: InferRequest) -> object:
        threads.append(threading.current_thread().name)
        return plane.infer_sync(model, req)

    resp = plane.infer_sync(plane.model("lr", "9"), _request())
    assert (resp.model_name, resp.model_version, resp.id) == ("lr", "9", "abc")
    assert [o.name for o in resp.outputs] == ["label", "probabilities"]
    assert resp.outputs[1].datatype == "FP32" and resp.outputs[1].shape == (2, 3)
    asyncio.run(plane.run(spy, plane.model("lr"), _request()))
    assert threads[0].startswith("conveyor-infer")


def test_encoded_infer_decodes_runs_and_encodes_once(plane: DataPlane) -> None:
    from conveyor.protocol.codec import decode_infer_response, encode_infer_request
    from conveyor.protocol.service import EncodedRequest

    body, json_len = encode_infer_request({"input": np.ones((3, 4), np.float32)}, binary=True)
    resp = asyncio.run(plane.infer(EncodedRequest("lr", None, body, json_len, "gen-1")))
    assert resp.request_id == "gen-1" and resp.model_version == "10"
    decoded = decode_infer_response(resp.body, resp.json_length)
    assert decoded.id == "gen-1" and decoded.outputs[0].shape == (3,)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput, 400),
        (UnsupportedMediaType, 415),
        (PayloadTooLarge, 413),
        (NotFound, 404),
        (Conflict, 409),
        (Unavailable, 503),
        (InferenceFailed, 500),
        (ConveyorError, 500),
    ],
)
def test_every_error_code_has_one_http_status(error: type[ConveyorError], status: int) -> None:
    assert status_for(error("x")) == status


def test_a_plane_serves_as_a_context_and_stops_its_threads_on_leaving(logreg_onnx: Path) -> None:
    from conveyor.protocol.codec import encode_infer_request
    from conveyor.protocol.service import EncodedRequest
    from conveyor.settings import Settings

    body, json_len = encode_infer_request({"input": np.ones((1, 4), np.float32)})

    async def serve_one() -> tuple[DataPlane, str | None]:
        model = OnnxModel(logreg_onnx.read_bytes(), name="ctx")
        async with DataPlane.from_settings([model], Settings(max_batch_size=3)) as plane:
            assert plane.batcher("ctx").config.max_batch_size == 3  # batching comes from the settings
            resp = await plane.infer(EncodedRequest("ctx", None, body, json_len, "r1"))
        return plane, resp.request_id

    plane, answered = asyncio.run(serve_one())
    assert answered == "r1"
    assert not [t.name for t in threading.enumerate() if t.name.startswith("conveyor-batcher-ctx")]
    with pytest.raises(RuntimeError, match="shutdown"):  # the codec pool is shut down too
        asyncio.run(plane.run(int))


def test_a_full_queue_refuses_before_the_body_is_decoded(
    logreg_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.errors import Overloaded
    from conveyor.protocol.service import EncodedRequest
    from conveyor.server import dataplane

    plane = DataPlane([OnnxModel(logreg_onnx.read_bytes(), name="lr")], max_workers=1)
    try:
        batcher = plane.batcher("lr")
        batcher._waiting = batcher.config.max_queue_size  # as if that many were queued

        def no_decoding(*_: object) -> None:
            raise AssertionError("a request that will be refused was decoded")

        monkeypatch.setattr(dataplane, "decode_plain", no_decoding)
        monkeypatch.setattr(dataplane, "decode_infer_request", no_decoding)
        body = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}'
        with pytest.raises(Overloaded, match="max_queue_size; retry later"):
            asyncio.run(plane.infer(EncodedRequest("lr", None, body, None, "r")))
        assert batcher.stats.rejected == 1
        batcher._waiting = 0
    finally:
        plane.close()
