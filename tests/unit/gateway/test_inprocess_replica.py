"""A replica the table says runs in-process: built by the injected loader, not admitted until its probe
passes (a process replica arrives admitted), a held request answered once it loads, and a table listing one
refused by a gateway that cannot load models."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from conveyor.errors import InvalidInput
from conveyor.gateway import Gateway
from conveyor.protocol.service import EncodedRequest
from conveyor.protocol.table import ReplicaSpec
from tests.unit.gateway.fakes import FakeUpstream
from tests.unit.protocol.test_table import INPROCESS_REPLICA, LOAD

HOLD = {"timeoutSeconds": 5.0, "maxRequests": 10, "reason": "starting"}


def table(replica: dict[str, Any]) -> dict[str, Any]:
    route = {"name": "tiny", "version": "2", "default": True, "replicas": [replica], "hold": HOLD}
    return {"epoch": "e", "generation": 1, "routes": [route]}


class Loader:
    """Stands in for targets.inprocess.LoadedUpstream: loaded when the test says so."""

    def __init__(self) -> None:
        self.made: list[tuple[ReplicaSpec, FakeUpstream, Callable[[], None]]] = []

    def __call__(self, spec: ReplicaSpec, on_loaded: Callable[[], None]) -> FakeUpstream:
        upstream = FakeUpstream(spec.address)
        upstream.healthy = False  # loading
        self.made.append((spec, upstream, on_loaded))
        return upstream

    def finish(self) -> None:
        for _, upstream, on_loaded in self.made:
            upstream.healthy = True
            on_loaded()


def test_an_inprocess_replica_is_loaded_admitted_once_its_probe_passes_and_then_answers_held_requests() -> (
    None
):
    async def scenario() -> None:
        loader = Loader()
        admitted: list[bool] = []
        gw = Gateway(None, rng=random.Random(0), load_inprocess=loader, health_interval_s=60.0)
        gw.on_admitted = lambda: admitted.append(True)
        gw.apply_table(table(INPROCESS_REPLICA))
        ((spec, _, _),) = loader.made
        assert spec.inprocess is not None and spec.inprocess.model_file == LOAD["modelFile"]
        assert not gw.replicas[0].admitted and not gw.ready()
        pending = asyncio.ensure_future(gw.infer(EncodedRequest("tiny", None, b"{}", None, "rid")))
        await asyncio.sleep(0.02)
        assert not pending.done()  # held while it loads
        loader.finish()  # the gateway probes at once: no wait for the 60 s health tick
        async with asyncio.timeout(5):
            answer = await pending
        assert answer.body == spec.address.encode()
        assert gw.replicas[0].admitted and gw.ready() and admitted == [True]
        gw.apply_table({**table(INPROCESS_REPLICA), "generation": 2})
        assert len(loader.made) == 1  # the same address keeps its loaded replica
        await gw.stop()

    asyncio.run(scenario())


def test_a_gateway_that_cannot_load_models_refuses_a_table_with_an_inprocess_replica() -> None:
    gw = Gateway(None, connect=FakeUpstream)
    with pytest.raises(InvalidInput, match="runs in-process, and this gateway cannot load models"):
        gw.apply_table(table(INPROCESS_REPLICA))
    assert gw.epoch is None and gw.replicas == []
