"""The upstream a gateway builds for an in-process replica, over a real model file and a real DataPlane:
it loads in a thread, its probe passes only once loaded, it answers, and bytes that are not the digest's
are refused (the replica never admitted) with the reason in the gateway's load report."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import orjson
import pytest

from conveyor.errors import Unavailable
from conveyor.gateway import Gateway
from conveyor.gateway.control import load_report
from conveyor.protocol.service import EncodedRequest
from conveyor.protocol.table import InProcessLoad, ReplicaSpec
from conveyor.settings import Settings
from conveyor.targets.inprocess import LoadedUpstream
from tests.fixtures.models import LOGREG_BODY


def spec(path: Path, sha256: str) -> ReplicaSpec:
    load = InProcessLoad(str(path), sha256, "clf", "1", 8, 0, 64, 30_000, 1, 1 << 20)
    return ReplicaSpec("clf-t-inprocess", "inprocess:clf/1/t", load)


def test_a_loaded_replica_passes_its_probe_answers_and_closes(logreg_onnx: Path) -> None:
    async def scenario() -> None:
        loaded = asyncio.Event()
        digest = hashlib.sha256(logreg_onnx.read_bytes()).hexdigest()
        upstream = LoadedUpstream(spec(logreg_onnx, digest), loaded.set, settings=Settings())
        async with asyncio.timeout(30):
            await loaded.wait()
        assert await upstream.probe() and upstream.problem is None
        answer = await upstream.infer(EncodedRequest("clf", "1", LOGREG_BODY, None, "rid"))
        outputs = {o["name"]: o for o in orjson.loads(answer.body)["outputs"]}
        assert answer.model_version == "1" and outputs["label"]["shape"] == [2]
        await upstream.close()
        assert not await upstream.probe()

    asyncio.run(scenario())


def test_bytes_that_are_not_the_digest_are_refused_and_reported(logreg_onnx: Path) -> None:
    async def scenario() -> None:
        settings = Settings()
        gw = Gateway(None, load_inprocess=lambda s, cb: LoadedUpstream(s, cb, settings=settings))
        route = {
            "name": "clf",
            "version": "1",
            "default": True,
            "replicas": [spec(logreg_onnx, "0" * 64).to_doc()],
        }
        gw.apply_table({"epoch": "e", "generation": 1, "routes": [route]})
        (replica,) = gw.replicas
        assert isinstance(replica.upstream, LoadedUpstream)
        async with asyncio.timeout(30):
            while replica.upstream.problem is None:
                await asyncio.sleep(0.01)
        assert "is corrupt: expected sha256 " + "0" * 64 in replica.upstream.problem
        await gw.check_health()
        assert not replica.admitted
        with pytest.raises(Unavailable, match=r"its load failed: .* is corrupt"):
            await replica.upstream.infer(EncodedRequest("clf", "1", LOGREG_BODY, None, "rid"))
        report = load_report(gw, "gw-1", "http://127.0.0.1:1", None)
        assert report is not None
        (row,) = report["routes"][0]["replicas"]
        assert row["admitted"] is False and "is corrupt" in row["problem"]
        await gw.stop()

    asyncio.run(scenario())
