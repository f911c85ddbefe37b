"""The dynamic batcher with real ONNX Runtime sessions: merged results, isolation, backpressure, deadlines."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from conveyor.errors import DeadlineExceeded, InvalidInput, Overloaded, Unavailable
from conveyor.protocol.codec import decode_infer_response, encode_infer_request
from conveyor.protocol.service import EncodedRequest
from conveyor.runtime import Batcher, BatchingConfig, OnnxModel
from conveyor.server.dataplane import DataPlane

Outcome = dict[str, np.ndarray] | BaseException


def _batcher(path: Path, **config: int) -> Batcher:
    return Batcher(OnnxModel(path.read_bytes(), name=path.stem), BatchingConfig(**config))


@pytest.fixture
def plane(logreg_onnx: Path) -> Iterator[DataPlane]:
    model = OnnxModel(logreg_onnx.read_bytes(), name="lr", batching=BatchingConfig(max_batch_size=8))
    p = DataPlane([model])
    yield p
    p.close()


async def _gather(b: Batcher, feeds: list[dict[str, np.ndarray]]) -> list[Outcome]:
    return await asyncio.gather(*(b.submit(f) for f in feeds), return_exceptions=True)


def _hold_the_worker(b: Batcher) -> tuple[threading.Event, Callable[..., list[np.ndarray]]]:
    """Make the worker thread wait inside its model calls (as a GIL-starved worker does) until the event is
    set; calls on other threads run at once. Returns the event and the model's own run."""
    worker_may_run = threading.Event()
    run = b.model.run

    def gated_run(feeds: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
        if threading.current_thread() is b._thread:
            assert worker_may_run.wait(10)
        return run(feeds, names)

    b.model.run = gated_run  # type: ignore[method-assign,assignment]
    return worker_may_run, run


def test_64_concurrent_requests_get_their_own_rows(plane: DataPlane, logreg_onnx: Path) -> None:
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(1 + i % 3, 4)).astype(np.float32) for i in range(64)]
    bodies = [encode_infer_request({"input": x}, id=f"r{i}", binary=i % 2 == 1) for i, x in enumerate(xs)]

    async def run() -> list[Any]:
        reqs = [EncodedRequest("lr", None, b, n, f"gen{i}") for i, (b, n) in enumerate(bodies)]
        return await asyncio.gather(*(plane.infer(r) for r in reqs))

    responses = asyncio.run(run())
    sess = ort.InferenceSession(str(logreg_onnx), providers=["CPUExecutionProvider"])
    for i, (x, resp) in enumerate(zip(xs, responses, strict=True)):
        got = decode_infer_response(resp.body, resp.json_length)
        assert got.id == f"r{i}"
        label, proba = sess.run(None, {"input": x})
        np.testing.assert_array_equal(got.as_dict()["label"], label)
        np.testing.assert_allclose(got.as_dict()["probabilities"], proba, rtol=1e-6)
    stats = plane.batcher("lr").stats
    assert stats.requests == 64 and stats.fallbacks == 0
    assert 1 < stats.largest_batch <= 8, stats  # merged, never past max_batch_size rows


def test_different_image_sizes_are_never_merged(batching_files: dict[str, Path]) -> None:
    b = _batcher(batching_files["pool"])
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.normal(size=(1 + i % 2, 3, 8 if i % 2 else 4, 8 if i % 2 else 4))} for i in range(64)]
    feeds = [{"x": f["x"].astype(np.float32)} for f in feeds]
    results = asyncio.run(_gather(b, feeds))
    b.close()
    for f, r in zip(feeds, results, strict=True):
        assert isinstance(r, dict)
        np.testing.assert_allclose(r["mean"], f["x"].mean(axis=(2, 3)), atol=1e-6)
    assert b.stats.fallbacks == 0 and b.stats.largest_batch > 1  # merging a mix would have failed in ORT


def test_a_bad_request_fails_alone(batching_files: dict[str, Path]) -> None:
    b = _batcher(batching_files["gather"])
    # Index 99 passes the signature checks and fails inside ONNX Runtime: the merged run fails, the
    # batcher reruns each request alone, and only that one gets the error. A wrong shape fails before.
    feeds = [{"i": np.array([i % 10, (i + 1) % 10], np.int64)} for i in range(16)]
    feeds[5] = {"i": np.array([99], np.int64)}
    feeds[9] = {"i": np.zeros((2, 2), np.int64)}
    for _ in range(5):  # merging depends on timing; a few rounds make a merged run near certain
        results = asyncio.run(_gather(b, feeds))
        for i, r in enumerate(results):
            if i in (5, 9):
                assert isinstance(r, InvalidInput), r
            else:
                assert isinstance(r, dict)
                np.testing.assert_array_equal(r["y"], feeds[i]["i"] * 10.0)
        if b.stats.fallbacks:
            break
    b.close()
    assert b.stats.fallbacks >= 1


def test_fixed_batch_models_run_one_request_at_a_time(batching_files: dict[str, Path]) -> None:
    b = _batcher(batching_files["fixed"])
    feeds = [{"x": np.full((2, 3), i - 8, np.float32)} for i in range(16)]
    results = asyncio.run(_gather(b, feeds))
    b.close()
    for f, r in zip(feeds, results, strict=True):
        assert isinstance(r, dict)
        np.testing.assert_array_equal(r["y"], np.maximum(f["x"], 0))
    assert b.stats.runs == 16 and not b.stats.batch_rows


def test_a_lone_request_does_not_wait_for_a_batch(logreg_onnx: Path) -> None:
    b = _batcher(logreg_onnx, max_queue_delay_us=2_000_000)
    x = {"input": np.ones((1, 4), np.float32)}

    async def one_by_one() -> float:
        await b.submit(x)
        start = time.perf_counter()
        for _ in range(5):
            await b.submit(x)
        return (time.perf_counter() - start) / 5

    assert asyncio.run(one_by_one()) < 0.2  # far below the 2 s delay
    b.close()


def test_a_lone_request_runs_inline_without_the_worker_and_a_burst_still_merges(logreg_onnx: Path) -> None:
    b = _batcher(logreg_onnx, max_batch_size=8)
    x = {"input": np.ones((1, 4), np.float32)}

    async def run() -> int:
        # The first goes to the worker (its run time is not known yet), as does any after a run that a
        # loaded machine stretched past the inline bound (under the whole suite on 2 cores, twenty in a row
        # once did): one at a time until five ran inline, within a bound.
        sent = 0
        while b.stats.inline < 5 and sent < 500:
            await b.submit(x)
            sent += 1
        await asyncio.gather(*(b.submit(x) for _ in range(16)))
        return sent

    sent = asyncio.run(run())
    b.close()
    assert b.stats.inline >= 5 and b.stats.requests == sent + 16, b.stats
    assert b.stats.runs < b.stats.requests  # not every request had a run of its own
    assert b.stats.largest_batch > 1  # requests arriving together still share runs


def test_a_full_queue_refuses_fast_then_recovers(batching_files: dict[str, Path]) -> None:
    b = _batcher(batching_files["slow"], max_batch_size=1, max_queue_size=2)
    feeds = [{"x": np.full((1, 1), 0.01 * i, np.float32)} for i in range(8)]

    async def run() -> tuple[list[Outcome], Outcome]:
        burst = await _gather(b, feeds)
        after = await b.submit(feeds[0])
        return burst, after

    burst, after = asyncio.run(run())
    b.close()
    refused = [r for r in burst if isinstance(r, Overloaded)]
    assert refused and all(isinstance(r, Overloaded | dict) for r in burst)
    assert refused[0].retry_after_s > 0 and b.stats.rejected == len(refused)
    assert isinstance(after, dict) and after["y"].shape == (1,)


def test_an_unanswered_request_times_out_and_a_queued_one_never_runs(batching_files: dict[str, Path]) -> None:
    b = _batcher(batching_files["slow"], max_batch_size=1, request_timeout_ms=20)
    feeds = [{"x": np.ones((4, 1), np.float32)} for _ in range(3)]  # each run takes longer than 20 ms

    async def run() -> list[Outcome]:
        results = await _gather(b, feeds)
        await b.drain()
        return results

    results = asyncio.run(run())
    b.close()
    assert all(isinstance(r, DeadlineExceeded) for r in results)
    assert b.stats.expired == 3 and b.stats.requests == 1  # the two queued ones were dropped unrun


def test_close_runs_queued_work_stops_the_thread_and_refuses_new_requests(logreg_onnx: Path) -> None:
    b = _batcher(logreg_onnx)
    x = {"input": np.ones((1, 4), np.float32)}

    async def run() -> None:
        await asyncio.gather(*(b.submit(x) for _ in range(10)))
        await b.drain()

    asyncio.run(run())
    b.close()
    assert not b._thread.is_alive() and b.stats.requests == 10
    with pytest.raises(Unavailable):
        asyncio.run(b.submit(x))


def test_a_full_queue_of_a_fast_model_is_run_by_the_loop_instead_of_refused(logreg_onnx: Path) -> None:
    # The worker thread is held inside a run (as a GIL-starved worker is): its queue fills. For a fast model
    # admit() still lets requests in, and those that find the queue full join the loop's batch, which the
    # loop runs at the end of its pass with the queued requests the worker has not taken: one merged call,
    # while the worker still holds its run. A slow model's full queue refuses
    # (test_a_full_queue_refuses_fast_then_recovers).
    b = _batcher(logreg_onnx, max_batch_size=8, max_queue_size=2)
    x = np.ones((1, 4), np.float32)
    worker_may_run, run = _hold_the_worker(b)

    async def until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5
        while not condition():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)

    async def scenario() -> tuple[list[Outcome], list[Outcome], int]:
        held = asyncio.ensure_future(b.submit({"input": x}))  # the model's first request: to the worker
        await until(lambda: b._busy == 1)
        b._last_run_s = 20e-6  # what the worker's earlier runs of this model would have measured
        queued = [asyncio.ensure_future(b.submit({"input": x * 2})) for _ in range(2)]
        await until(lambda: b._waiting == 2)  # queued behind the held run: the queue is full
        b.admit()  # would raise Overloaded for a slow model
        past = [asyncio.ensure_future(b.submit({"input": x * k})) for k in (3, 4, 5)]
        done = await asyncio.gather(*queued, *past, return_exceptions=True)
        busy_then = b._busy
        later = asyncio.ensure_future(b.submit({"input": x * 6}))
        worker_may_run.set()
        return done, [await held, await later], busy_then

    done, rest, busy_then = asyncio.run(scenario())
    b.close()
    assert busy_then == 1  # the loop answered the five while the worker still held its run
    expected = run({"input": np.concatenate([x * k for k in (2, 2, 3, 4, 5, 1, 6)])}, ["probabilities"])[0]
    for i, r in enumerate([*done, *rest]):
        assert isinstance(r, dict), r
        np.testing.assert_allclose(r["probabilities"], expected[i : i + 1], rtol=1e-6)
    # Seven requests, three calls: the held one, the loop's batch of five (the two queued ones first), and
    # the last, run by the worker or inline.
    assert b.stats.rejected == 0 and b.stats.requests == 7 and b.stats.runs == 3, b.stats
    assert b.stats.loop_batches == 1 and b.stats.batch_rows[5] == 1, b.stats


def test_the_loops_batch_runs_when_it_is_full_and_never_holds_more_than_a_batch(logreg_onnx: Path) -> None:
    # The worker is held. 20 requests in one pass: each time the queue of 1 and the loop's batch behind it
    # make 8, they run at once, in one call; the last 4 at the end of the pass.
    b = _batcher(logreg_onnx, max_batch_size=8, max_queue_size=1)
    x = np.ones((1, 4), np.float32)
    worker_may_run, _ = _hold_the_worker(b)

    async def scenario() -> list[Outcome]:
        held = asyncio.ensure_future(b.submit({"input": x}))
        while b._busy != 1:
            await asyncio.sleep(0.001)
        b._last_run_s = 20e-6
        burst = await _gather(b, [{"input": x * k} for k in range(2, 22)])
        worker_may_run.set()
        return [await held, *burst]

    results = asyncio.run(scenario())
    b.close()
    assert all(isinstance(r, dict) for r in results), results
    assert b.stats.rejected == 0 and b.stats.requests == 21 and b.stats.runs == 4, b.stats
    assert b.stats.batch_rows == {8: 2, 4: 1} and b.stats.loop_batches == 3, b.stats
