"""The rollout controller over a real registry, a scraped-metrics history filled with known numbers and a real
webhook receiver: manual gates and approval, pause and resume, confirmation webhooks, event webhooks, the
validation gate, the progress deadline, and a rollback that moves the traffic before it writes anything."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import errors
from conveyor.control import management_ops as ops
from conveyor.control.rollouts import RolloutController
from conveyor.observe.history import StackHistory
from conveyor.protocol.table import SplitSpec
from conveyor.registry import LocalArtifactStore, Registry
from tests.fixtures.webhook import Receiver
from tests.unit.control.test_analysis import D, traffic

SIG: dict[str, Any] = {"inputs": [], "outputs": []}
INTERVAL = 30.0


def doc(model: str, rollout: dict[str, Any]) -> dict[str, Any]:
    spec = {"model": model, "replicas": 1, "rollout": {"interval": "30s", **rollout}}
    return {"apiVersion": "conveyor.dev/v1", "kind": "Deployment", "metadata": {"name": D}, "spec": spec}


class Runtime:
    """What the reconciler does for the controller: the splits each published table carries."""

    def __init__(self) -> None:
        self.controller: RolloutController | None = None
        self.tables: list[list[SplitSpec]] = []
        self.routed = True
        self.changes = 0

    def publish_now(self) -> None:
        assert self.controller is not None
        self.tables.append(self.controller.splits())

    def changed(self, deployment: str | None = None) -> None:
        self.changes += 1

    def split_routed(self, deployment: str) -> bool:
        return self.routed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    r = Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t")
    r.register("clf", b"v1", signature=SIG, framework="onnx")
    r.register("clf", b"v2", signature=SIG, framework="onnx")
    r.register("clf", b"v3", signature=SIG, framework="onnx", tags={"validated": "false"})
    try:
        yield r
    finally:
        r.close()


class Scrapes:
    """A history the harness scrapes as its clock moves: each version's counters grow at a fixed rate (per
    INTERVAL), the candidate's also as mirrored requests (a shadow reads those)."""

    def __init__(
        self, stable_ok: float, candidate_ok: float, candidate_failed: float = 0, candidate: str = "2"
    ):
        self.rates = (stable_ok, candidate_ok, candidate_failed)
        self.candidate = candidate
        self.history = StackHistory()

    def scrape(self, t: float) -> None:
        stable_ok, ok, failed = (rate * t / INTERVAL for rate in self.rates)
        self.history.add(
            t,
            [
                *traffic("1", ok=stable_ok),
                *traffic(self.candidate, ok=ok, failed=failed),
                *traffic(self.candidate, ok=ok, failed=failed, shadow=True),
            ],
        )


class Harness:
    def __init__(self, registry: Registry, scrapes: Scrapes) -> None:
        self.registry = registry
        self.runtime = Runtime()
        self.clock = Clock()
        self.scrapes = scrapes
        scrapes.scrape(self.clock.now)
        history = scrapes.history
        self.controller = RolloutController(
            registry, history, self.runtime, clock=self.clock, wall=self.clock
        )
        self.runtime.controller = self.controller

    async def start(self, rollout: dict[str, Any], candidate: str = "clf:2") -> None:
        ops.apply_documents(self.registry, [doc("clf:1", rollout)], dry_run=False, user="t")
        ops.apply_documents(self.registry, [doc(candidate, rollout)], dry_run=False, user="t")
        await self.controller.notifier.start()
        await self.controller.reload()
        await self.tick()  # the split is routed: the step's clock starts

    async def tick(self, seconds: float = 0.0) -> None:
        self.clock.now += seconds
        if seconds:
            self.scrapes.scrape(self.clock.now)
        await self.controller.tick()

    async def check(self) -> None:
        """One interval of the current step: its clock starts (a new step's split routed), then it ends."""
        await self.tick()
        await self.tick(INTERVAL)

    def phase(self) -> str:
        return self.registry.rollouts.get(D).phase

    def weight(self) -> float:
        (split,) = self.controller.splits()
        return split.weight

    async def stop(self) -> None:
        await self.controller.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_manual_gate_waits_for_approval_and_approve_enters_the_step(registry: Registry) -> None:
    async def scenario() -> None:
        h = Harness(registry, Scrapes(100, 100))
        await h.start({"strategy": "canary", "steps": [10, 50, 100], "manualGates": [50]})
        assert h.weight() == 10.0
        await h.check()  # the 10% step passed: the 50% step is gated
        assert (h.phase(), h.weight()) == ("waiting", 10.0)
        await h.check()
        assert h.phase() == "waiting"  # nothing moves without approval
        info = await h.controller.command(D, "approve", "token:ops")
        assert (info.phase, info.step, h.weight()) == ("progressing", 1, 50.0)
        assert h.runtime.tables[-1][0].weight == 50.0  # published at once
        await h.check()
        await h.check()
        assert h.phase() == "promoted"
        actions = [e.action for e in registry.audit.list(None, 100)]
        assert "rollout.approve" in actions and "rollout.promote" in actions
        await h.stop()

    run(scenario())


def test_pause_stops_the_checks_and_resume_starts_them_again(registry: Registry) -> None:
    async def scenario() -> None:
        h = Harness(registry, Scrapes(100, 50, candidate_failed=50))  # a failing candidate
        await h.start({"strategy": "canary", "steps": [10, 100], "threshold": 1})
        await h.controller.command(D, "pause", "token:ops")
        await h.tick(INTERVAL * 10)
        assert h.phase() == "paused"  # no check ran, so no rollback
        with pytest.raises(errors.Conflict):
            await h.controller.command(D, "approve", "token:ops")
        await h.controller.command(D, "resume", "token:ops")
        await h.check()
        assert h.phase() == "rolled_back"
        await h.stop()

    run(scenario())


def test_a_rollback_moves_the_traffic_before_it_writes_the_stable_revision(registry: Registry) -> None:
    async def scenario() -> None:
        h = Harness(registry, Scrapes(100, 50, candidate_failed=50))
        await h.start({"strategy": "canary", "steps": [10, 100], "threshold": 2})
        await h.check()
        assert (h.phase(), registry.rollouts.get(D).failed_checks) == ("progressing", 1)
        await h.check()
        rollout = registry.rollouts.get(D)
        assert rollout.phase == "rolled_back"
        assert "success rate" in str(rollout.reason)
        assert h.runtime.tables[-1] == []  # the table without the split went out first
        current = registry.deployments.get(D)
        assert (current.model, current.revision) == ("clf:1", 3)  # a new revision equal to the stable one
        assert "rolled back" in registry.deployments.history(D)[-1].change_cause
        await h.stop()

    run(scenario())


def test_event_webhooks_get_each_step_and_a_confirm_hook_gates_the_steps(
    registry: Registry, receiver: Receiver
) -> None:
    gate = Receiver(statuses=[503])  # says wait once, then go

    async def scenario() -> None:
        hooks = [{"url": receiver.url}, {"url": gate.url, "confirm": "step"}]
        h = Harness(registry, Scrapes(100, 100))
        await h.start({"strategy": "canary", "steps": [10, 100], "webhooks": hooks})
        await h.check()  # passed; the confirm hook answers 503
        assert (h.phase(), h.weight()) == ("waiting", 10.0)
        await h.check()  # asked again: 200
        assert (h.phase(), h.weight()) == ("progressing", 100.0)
        await h.check()
        assert h.phase() == "promoted"
        await h.controller.notifier.drain(10.0)
        await h.stop()

    try:
        run(scenario())
        assert gate.attempts == 2
    finally:
        gate.close()
    events = [b["event"] for b in receiver.bodies]
    assert events == ["step", "promotion"]
    assert receiver.bodies[-1]["candidateModel"] == "clf:2" and receiver.bodies[-1]["phase"] == "promoted"


def test_a_version_not_validated_is_refused_traffic_unless_forced(registry: Registry) -> None:
    with pytest.raises(errors.Conflict, match="not validated"):
        ops.apply_documents(registry, [doc("clf:1", {})], dry_run=False, user="t")
        ops.apply_documents(registry, [doc("clf:3", {"strategy": "canary"})], dry_run=False, user="t")
    assert registry.deployments.get(D).model == "clf:1"  # refused before anything was stored

    async def scenario() -> None:
        h = Harness(registry, Scrapes(100, 100, candidate="3"))
        shadow = {"strategy": "shadow", "iterations": 1, "analysis": {"agreement": None}}
        await h.start(shadow, candidate="clf:3")
        await h.check()
        rollout = registry.rollouts.get(D)
        assert rollout.phase == "waiting" and "not validated" in str(rollout.reason)
        with pytest.raises(errors.Conflict, match="not validated"):
            await h.controller.command(D, "approve", "token:ops")
        await h.stop()

    run(scenario())


def test_no_progress_within_the_deadline_rolls_back(registry: Registry) -> None:
    async def scenario() -> None:
        h = Harness(registry, Scrapes(100, 100))
        h.runtime.routed = False  # the candidate never gets a ready replica
        await h.start({"strategy": "canary", "steps": [10, 100], "progressDeadline": "2m"})
        await h.tick(60)
        assert h.phase() == "progressing"
        await h.tick(61)
        rollout = registry.rollouts.get(D)
        assert rollout.phase == "rolled_back" and "progress deadline" in str(rollout.reason)
        await h.stop()

    run(scenario())
