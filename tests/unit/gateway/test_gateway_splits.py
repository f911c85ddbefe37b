"""The gateway under a table with a split: weights, A/B, mirrored and compared sends that the caller never
waits for nor sees fail, the bound of 64 in flight, and stop() leaving no task behind."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from conveyor.errors import Unavailable
from conveyor.gateway import Gateway
from conveyor.observe.recorder import ShadowCounts
from conveyor.protocol.codec import encode_infer_response
from conveyor.protocol.service import EncodedRequest, EncodedResponse
from conveyor.protocol.types import InferResponse, ResponseOutput
from tests.unit.gateway.fakes import FakeUpstream


class V2Upstream(FakeUpstream):
    """Answers a V2 body: ``label`` [2] INT64, the same for every replica unless ``label`` is changed."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.label = np.array([0, 1], dtype=np.int64)

    async def infer(self, request: EncodedRequest) -> EncodedResponse:
        await super().infer(request)
        out = ResponseOutput("label", "INT64", (2,), self.label)
        body, _ = encode_infer_response(InferResponse("lr", [out], request.version, request.request_id))
        return EncodedResponse(body, None, request.request_id, request.version)


class Stack:
    def __init__(self) -> None:
        self.ups: dict[str, V2Upstream] = {}
        self.gw = Gateway(None, connect=self._connect, rng=random.Random(0))
        self.counts = self.gw.second_sends.counts = ShadowCounts()

    def _connect(self, address: str) -> V2Upstream:
        self.ups[address] = V2Upstream(address)
        return self.ups[address]

    def apply(self, **split: Any) -> None:
        routes = [
            {"name": "lr", "version": v, "default": v == "1", "replicas": [{"address": f"unix:/r{v}"}]}
            for v in ("1", "2")
        ]
        splits = [{"name": "lr", "stable": "1", "candidate": "2", **split}] if split else []
        self.gw.apply_table({"epoch": "e", "generation": 1, "routes": routes, "splits": splits})

    @property
    def stable(self) -> V2Upstream:
        return self.ups["unix:/r1"]

    @property
    def candidate(self) -> V2Upstream:
        return self.ups["unix:/r2"]

    async def infer(self, version: str | None = None, headers: Any = (), rid: str = "rid") -> str | None:
        answer = await self.gw.infer(EncodedRequest("lr", version, b"{}", None, rid, headers=headers))
        return answer.model_version

    async def settle(self) -> None:
        """Until every second send has been answered and compared."""
        while self.gw.second_sends.tasks:
            await asyncio.sleep(0.001)


def run(scenario: Callable[[Stack], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        stack = Stack()
        try:
            await scenario(stack)
        finally:
            await stack.gw.stop()
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not leftover, f"tasks left behind: {leftover}"

    asyncio.run(main())


def test_the_weight_is_the_share_of_bare_requests_the_candidate_answers() -> None:
    async def scenario(s: Stack) -> None:
        s.apply(weight=30)
        versions = [await s.infer() for _ in range(2000)]
        assert 520 <= versions.count("2") <= 680
        assert {await s.infer("1") for _ in range(50)} == {"1"}  # a named version is never split
        s.apply()  # the rollout ended: no split
        assert {await s.infer() for _ in range(50)} == {"1"}

    run(scenario)


def test_ab_routes_by_header_and_keeps_a_user_on_one_variant() -> None:
    async def scenario(s: Stack) -> None:
        s.apply(weight=50, ab={"header": "x-variant", "headerValue": "beta", "userHeader": "x-user-id"})
        assert await s.infer(headers=[(b"x-variant", b"beta")]) == "2"
        assert await s.infer(headers=[]) == "1"
        for i in range(40):
            user = [(b"x-user-id", f"user-{i}".encode())]
            assert len({await s.infer(headers=user) for _ in range(5)}) == 1

    run(scenario)


def test_a_candidate_without_a_replica_that_can_answer_leaves_its_requests_to_stable() -> None:
    async def scenario(s: Stack) -> None:
        s.apply(weight=100)
        s.gw.eject("unix:/r2")
        assert {await s.infer() for _ in range(20)} == {"1"}

    run(scenario)


def test_mirrored_requests_answer_with_stable_and_count_the_comparison() -> None:
    async def scenario(s: Stack) -> None:
        s.apply(mirror=100)
        assert [await s.infer(rid=f"r{i}") for i in range(10)] == ["1"] * 10
        await s.settle()
        assert [r.request_id for r in s.candidate.seen] == [f"r{i}" for i in range(10)]
        s.candidate.label = np.array([1, 1], dtype=np.int64)
        assert [await s.infer() for _ in range(5)] == ["1"] * 5
        await s.settle()
        assert s.counts.comparisons == {("lr", "2", "agree"): 10, ("lr", "2", "labels_differ"): 5}
        assert s.counts.sends[("lr", "2")].codes == {200: 15}

    run(scenario)


def test_the_caller_never_waits_for_the_mirrored_send_and_stop_cancels_it() -> None:
    async def scenario(s: Stack) -> None:
        s.apply(mirror=100)
        s.candidate.gate = asyncio.Event()  # the candidate never answers
        assert await asyncio.wait_for(s.infer(), 5) == "1"
        assert len(s.gw.second_sends.tasks) == 1
        await s.gw.stop()  # run() then checks that no task is left
        assert not s.gw.second_sends.tasks
        assert s.counts.comparisons == {}

    run(scenario)


def test_a_failing_mirror_never_touches_the_callers_answer() -> None:
    async def scenario(s: Stack) -> None:
        s.apply(mirror=100)
        s.candidate.fail_with = Unavailable("candidate broken")
        assert [await s.infer() for _ in range(4)] == ["1"] * 4
        await s.settle()
        assert s.counts.comparisons == {("lr", "2", "failed"): 4}
        assert s.counts.sends[("lr", "2")].codes == {503: 4}

    run(scenario)


def test_at_most_64_second_sends_are_in_flight_and_more_are_dropped_and_counted() -> None:
    async def scenario(s: Stack) -> None:
        s.apply(mirror=100)
        s.candidate.gate = asyncio.Event()
        assert [await s.infer() for _ in range(70)] == ["1"] * 70
        assert len(s.gw.second_sends.tasks) == 64
        assert s.counts.dropped == {("lr", "2"): 6}
        s.candidate.gate.set()
        await s.settle()
        assert s.counts.comparisons == {("lr", "2", "agree"): 64}

    run(scenario)


def test_compare_sends_the_candidates_requests_to_stable_and_answers_with_the_candidate() -> None:
    async def scenario(s: Stack) -> None:
        s.apply(weight=100, compare=100)
        s.stable.label = np.array([1, 0], dtype=np.int64)
        assert [await s.infer() for _ in range(3)] == ["2"] * 3
        await s.settle()
        assert len(s.stable.seen) == 3
        assert s.counts.comparisons == {("lr", "2", "labels_differ"): 3}  # counted under the candidate
        assert s.counts.sends[("lr", "1")].codes == {200: 3}  # sent to stable

    run(scenario)


def test_a_failed_caller_request_fails_its_comparison_and_still_raises() -> None:
    async def scenario(s: Stack) -> None:
        s.apply(mirror=100)
        s.stable.fail_with = Unavailable("stable broken")
        for _ in range(2):
            try:
                await s.infer()
            except Unavailable:
                pass
            else:
                raise AssertionError("the caller must see stable's failure")
        await s.settle()
        assert s.counts.comparisons == {("lr", "2", "failed"): 2}

    run(scenario)
