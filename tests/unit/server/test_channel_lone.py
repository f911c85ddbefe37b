"""The channel replica answers a lone INFER frame in ``data_received`` (DataPlane.infer_now), and everything
else through the batcher's ``submit``: frames read together, a body that is not plain JSON, a cold model.

A real replica loop on a Unix socket, a raw framed client; ``submit`` is wrapped to count who went through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from conveyor.protocol import frames
from conveyor.protocol.codec import decode_infer_response, encode_infer_request
from conveyor.runtime import OnnxModel
from conveyor.server.channel import serve_channel
from conveyor.server.dataplane import DataPlane

Client = Callable[[list[bytes]], Awaitable[list[tuple[int, bytes]]]]


def _plain(x: list[list[float]], rid: str) -> bytes:
    body = {"id": rid, "inputs": [{"name": "input", "datatype": "FP32", "shape": [len(x), 4], "data": x}]}
    return frames.encode_call("lr", None, rid, None) + orjson.dumps(body)


def _run(logreg_onnx: Path, tmp_path: Path, scenario: Callable[[DataPlane, Client], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        plane = DataPlane([OnnxModel(logreg_onnx.read_bytes(), name="lr", version="1")], max_workers=1)
        batcher = plane.batcher("lr")
        calls: list[int] = []
        submit = batcher.submit

        async def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return await submit(*args, **kwargs)

        batcher.submit = counted  # type: ignore[method-assign]
        sock = tmp_path / "r.sock"
        ready = asyncio.Event()
        server = asyncio.create_task(serve_channel(plane, f"unix:{sock}", on_ready=lambda _: ready.set()))
        await asyncio.wait_for(ready.wait(), 5)
        reader, writer = await asyncio.open_unix_connection(str(sock))
        stream = iter(range(1, 1000))

        async def send(payloads: list[bytes]) -> list[tuple[int, bytes]]:
            """Write the INFER frames in one write; their (kind, payload) answers in order sent."""
            ids = [next(stream) for _ in payloads]
            writer.write(
                b"".join(
                    b"".join(frames.frame(i, frames.INFER, p)) for i, p in zip(ids, payloads, strict=True)
                )
            )
            got: dict[int, tuple[int, bytes]] = {}
            while len(got) < len(ids):
                head = await asyncio.wait_for(reader.readexactly(frames.HEADER.size), 5)
                length, sid, kind = frames.HEADER.unpack(head)
                got[sid] = (kind, await reader.readexactly(length))
            return [got[i] for i in ids]

        try:
            return await scenario(plane, send), calls
        finally:
            writer.close()
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
            plane.close()

    return asyncio.run(main())


def _outputs(kind: int, payload: bytes) -> dict[str, np.ndarray]:
    assert kind == frames.OK, payload
    body, json_length, _, version = frames.decode_reply(payload)
    assert version == "1"
    return {o.name: o.data for o in decode_infer_response(body, json_length).outputs}


def test_a_lone_plain_frame_is_answered_without_the_batchers_submit(
    logreg_onnx: Path, tmp_path: Path
) -> None:
    async def scenario(plane: DataPlane, send: Client) -> tuple[list[Any], int]:
        # The first runs are timed through the worker; a cold one (ONNX Runtime allocating its arenas) may
        # read slower than the inline bound on a loaded machine, so the next lone request also takes the
        # worker, and its warm run makes the model read fast.
        cold = [await send([_plain([[1, 2, 3, 4]], f"cold-{i}")]) for i in range(2)]
        inline_before = plane.batcher("lr").stats.inline
        lone = [await send([_plain([[1, 2, 3, 4]], f"lone-{i}")]) for i in range(5)]
        return [*cold, *lone], plane.batcher("lr").stats.inline - inline_before

    (answers, inline), calls = _run(logreg_onnx, tmp_path, scenario)
    assert inline == 5  # every lone frame ran on the loop
    assert 1 <= len(calls) <= 2  # the cold ones only
    first = _outputs(*answers[0][0])
    for ((kind, payload),) in answers[1:]:
        got = _outputs(kind, payload)
        np.testing.assert_array_equal(got["label"], first["label"])
        np.testing.assert_allclose(got["probabilities"], first["probabilities"])


def test_frames_read_together_go_through_submit_and_may_merge(logreg_onnx: Path, tmp_path: Path) -> None:
    async def scenario(plane: DataPlane, send: Client) -> Any:
        await send([_plain([[1, 2, 3, 4]], "cold")])
        together = await send([_plain([[i, 2, 3, 4]], f"t-{i}") for i in range(6)])
        return together, plane.batcher("lr").stats.requests

    (together, requests), calls = _run(logreg_onnx, tmp_path, scenario)
    assert len(calls) == 7 and requests == 7
    labels = [_outputs(kind, payload)["label"][0] for kind, payload in together]
    assert len(labels) == 6


def test_a_lone_frame_with_a_bad_input_is_an_error_frame(logreg_onnx: Path, tmp_path: Path) -> None:
    async def scenario(plane: DataPlane, send: Client) -> Any:
        await send([_plain([[1, 2, 3, 4]], "cold")])
        wrong_shape = frames.encode_call("lr", None, "bad", None) + orjson.dumps(
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
        )
        unknown = frames.encode_call("nope", None, "x", None) + orjson.dumps({"inputs": []})
        return [await send([wrong_shape]), await send([unknown]), await send([_plain([[1, 2, 3, 4]], "ok")])]

    (bad, unknown, ok), _ = _run(logreg_onnx, tmp_path, scenario)
    ((kind, payload),) = bad
    assert kind == frames.ERROR
    err = frames.decode_error(payload)
    assert type(err).__name__ == "InvalidInput" and "input" in err.message
    ((kind, payload),) = unknown
    assert kind == frames.ERROR and type(frames.decode_error(payload)).__name__ == "NotFound"
    _outputs(*ok[0])  # the connection lives on


@pytest.mark.parametrize("binary", [False, True], ids=["json-outputs-named", "binary"])
def test_a_lone_frame_that_is_not_plain_goes_the_regular_way(
    logreg_onnx: Path, tmp_path: Path, binary: bool
) -> None:
    x = np.ones((2, 4), np.float32)
    body, json_length = encode_infer_request(
        {"input": x}, binary=binary, outputs=["probabilities"], binary_outputs=binary
    )

    async def scenario(plane: DataPlane, send: Client) -> Any:
        await send([_plain([[1, 2, 3, 4]], "cold")])
        return await send([frames.encode_call("lr", None, "r", json_length) + body])

    ((kind, payload),), calls = _run(logreg_onnx, tmp_path, scenario)
    assert len(calls) == 2  # the cold one and this one
    assert list(_outputs(kind, payload)) == ["probabilities"]
