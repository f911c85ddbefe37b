"""The reconciler with real replica processes and a real SQLite registry (no API, no gateway).

Every test stops the replicas it caused, by pid, even when it fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conveyor import errors
from conveyor.control.reconciler import Reconciler
from conveyor.registry import Registry
from conveyor.settings import Settings
from conveyor.spec import load_documents
from conveyor.targets.backoff import Backoff
from conveyor.targets.processes import LocalProcesses, socket_dir
from conveyor.targets.select import Targets
from tests.fixtures.models import build_logreg
from tests.fixtures.stack import kill_recorded_replicas

SPEC = """
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: {model}
  replicas: {replicas}
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", replica_start_timeout_s=60.0)


@pytest.fixture
def registry(settings: Settings, tmp_path: Path) -> Registry:
    for seed in (0, 1):
        conveyor.register("clf", build_logreg(tmp_path / f"clf{seed}.onnx", seed=seed), settings=settings)
    return Registry.from_settings(settings)


def apply(registry: Registry, model: str, replicas: int) -> int:
    (doc,) = load_documents(SPEC.format(model=model, replicas=replicas))
    version = registry.resolve(model)
    return registry.deployments.apply(doc.to_dict(), doc.fingerprint(), model=version.ref).revision


def make_targets(settings: Settings) -> Targets:
    """The local target alone, its replicas orphaned 30 s after their control plane."""
    run = settings.home / "run"
    return Targets(
        [LocalProcesses(run, socket_dir(settings.home), lease=run / "controlplane.lease", orphan_after_s=30)]
    )


def run_with_reconciler(
    registry: Registry, settings: Settings, scenario: Callable[[Reconciler], Awaitable[None]]
) -> None:
    """Run ``scenario`` in a fresh loop; stop the reconciler's replicas afterwards, whatever happened."""

    async def main() -> None:
        rec = Reconciler(registry, settings, make_targets(settings), backoff=Backoff(initial_s=0.1))
        try:
            await scenario(rec)
        finally:
            await rec.stop(stop_replicas=True)

    try:
        asyncio.run(main())
    finally:
        _kill_leftovers(settings)


def _kill_leftovers(settings: Settings) -> None:
    kill_recorded_replicas(settings.home)


async def until(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def routed(rec: Reconciler) -> dict[str, list[str]]:
    return {
        f"{r['version']}{'*' if r['default'] else ''}": [x["id"] for x in r["replicas"]]
        for r in rec.routing()["routes"]
    }


def test_starts_replicas_routes_only_ready_ones_and_replaces_a_killed_one(
    registry: Registry, settings: Settings
) -> None:
    apply(registry, "clf:1", 2)
    run_with_reconciler(registry, settings, lambda rec: _replaces_killed(rec, registry))


async def _replaces_killed(reconciler: Reconciler, registry: Registry) -> None:
    starting_routed: list[set[str]] = []

    async def check_tables() -> None:  # every table, as it is published: no starting replica in it
        async for _ in reconciler.watch():
            starting = {r["id"] for r in reconciler.replicas("clf") if r["state"] == "starting"}
            if starting & (ids := {x for ids in routed(reconciler).values() for x in ids}):
                starting_routed.append(starting & ids)

    await reconciler.start()
    watcher = asyncio.create_task(check_tables())
    try:
        await until(
            lambda: reconciler.replica_counts("clf") == {"revision": 1, "desired": 2, "ready": 2, "total": 2}
        )
        table = reconciler.routing()
        (route,) = table["routes"]
        assert route["name"] == "clf" and route["version"] == "1" and route["default"] is True
        assert len(route["replicas"]) == 2
        victim = reconciler.replicas("clf")[0]
        os.kill(victim["pid"], signal.SIGKILL)
        await until(lambda: victim["id"] not in {r["id"] for r in reconciler.replicas()})
        await until(lambda: reconciler.replica_counts("clf")["ready"] == 2)
        # Events are written by a background task: wait for the failure's, then read them all.
        await until(lambda: "ReplicaFailed" in [e.kind for e in registry.deployments.events("clf")], 5)
    finally:
        watcher.cancel()
    events = registry.deployments.events("clf")
    assert events[0].kind == "RevisionCreated"
    failed = [e for e in events if e.kind == "ReplicaFailed"]
    assert len(failed) == 1 and victim["id"] in failed[0].message and "was killed" in failed[0].message
    replaced = {r["id"] for r in reconciler.replicas("clf")}
    assert victim["id"] not in replaced and len(replaced) == 2
    assert set(routed(reconciler)["1*"]) == replaced  # the replacement is routed, the victim no longer
    assert not starting_routed, f"starting replicas were routed: {starting_routed}"


def test_version_change_starts_new_replicas_before_draining_old_ones(
    registry: Registry, settings: Settings
) -> None:
    apply(registry, "clf:1", 1)
    run_with_reconciler(registry, settings, lambda rec: _version_change(rec, registry))


async def _version_change(reconciler: Reconciler, registry: Registry) -> None:
    await reconciler.start()
    await until(lambda: reconciler.replica_counts("clf")["ready"] == 1)
    seen: list[dict[str, list[str]]] = []

    async def record_tables() -> None:
        async for table in reconciler.watch():
            seen.append(routed(reconciler) if table else {})

    watcher = asyncio.create_task(record_tables())
    apply(registry, "clf:2", 1)
    reconciler.changed("clf")
    await until(
        lambda: (
            [r["version"] for r in reconciler.replicas()] == ["2"]
            and reconciler.replica_counts("clf")["ready"] == 1
        )
    )
    watcher.cancel()
    # Every table had a ready default route: never an empty one mid-update.
    for table in seen:
        defaults = [v for k, v in table.items() if k.endswith("*")]
        assert defaults and defaults[0], table
    assert any("2*" in t for t in seen)


def test_a_restarted_control_plane_adopts_running_replicas(registry: Registry, settings: Settings) -> None:
    apply(registry, "clf:1", 1)
    try:
        asyncio.run(_adopts(registry, settings))
    finally:
        _kill_leftovers(settings)


async def _adopts(registry: Registry, settings: Settings) -> None:
    first = Reconciler(registry, settings, make_targets(settings))
    try:
        await first.start()
        await until(lambda: first.replica_counts("clf")["ready"] == 1)
        (before,) = first.replicas()
        await first.stop(stop_replicas=False)
        second = Reconciler(registry, settings, make_targets(settings))
        await second.start()
        try:
            (after,) = second.replicas()
            assert (after["id"], after["pid"], after["state"]) == (before["id"], before["pid"], "ready")
            assert second.routing()["routes"][0]["replicas"][0]["id"] == before["id"]
        finally:
            await second.stop(stop_replicas=True)
    finally:
        await first.stop(stop_replicas=True)


def test_a_revision_that_cannot_run_leaves_the_running_one_serving(
    registry: Registry, settings: Settings
) -> None:
    apply(registry, "clf:1", 1)

    async def scenario(reconciler: Reconciler) -> None:
        await reconciler.start()
        await until(lambda: reconciler.replica_counts("clf")["ready"] == 1)
        (before,) = reconciler.replicas()
        blob = registry.artifact_path(registry.resolve("clf:2"))
        blob.chmod(0o644)
        blob.write_bytes(b"not the registered bytes")
        apply(registry, "clf:2", 1)
        reconciler.changed("clf")
        await until(lambda: "InvalidDeployment" in [e.kind for e in registry.deployments.events("clf")], 10)
        await asyncio.sleep(1.0)  # a few reconcile ticks: nothing may be drained
        (after,) = reconciler.replicas()
        assert (after["id"], after["version"], after["state"]) == (before["id"], "1", "ready")
        assert [r["version"] for r in reconciler.routing()["routes"]] == ["1"]
        message = next(e.message for e in registry.deployments.events("clf") if e.kind == "InvalidDeployment")
        assert "keeping what runs" in message
        assert (reconciler.problem("clf") or "").startswith("model clf:2: artifact")

    run_with_reconciler(registry, settings, scenario)


def test_a_version_a_deployment_runs_cannot_be_deleted(registry: Registry) -> None:
    apply(registry, "clf:1", 1)
    with pytest.raises(errors.Conflict, match=r"deployment\(s\) clf run it"):
        registry.delete_version("clf", 1)
    registry.delete_version("clf", 2)  # not deployed: fine


def test_a_hung_replica_is_replaced_with_one_event_and_probes_never_stall_the_loop(
    registry: Registry, settings: Settings
) -> None:
    apply(registry, "clf:1", 2)

    async def scenario(reconciler: Reconciler) -> None:
        await reconciler.start()
        await until(lambda: reconciler.replica_counts("clf")["ready"] == 2)
        victim = reconciler.replicas("clf")[0]
        os.kill(victim["pid"], signal.SIGSTOP)  # SIGKILL still ends a stopped process
        started = time.monotonic()
        # Each failed probe waits for its 2 s timeout; the loop keeps ticking meanwhile (a scale-up applied
        # now starts its replica at once, not after the probes).
        apply(registry, "clf:1", 3)
        reconciler.changed("clf")
        await until(lambda: reconciler.replica_counts("clf")["total"] == 3, timeout=1.5)
        await until(lambda: victim["id"] not in {r["id"] for r in reconciler.replicas()}, timeout=30)
        assert time.monotonic() - started < 15
        await until(lambda: reconciler.replica_counts("clf")["ready"] == 3)
        await asyncio.sleep(1.5)  # more probe rounds: the event must not repeat
        messages = [e.message for e in registry.deployments.events("clf") if e.kind == "ReplicaUnhealthy"]
        assert len(messages) == 1, messages
        assert f"replica {victim['id']} failed 3 health probes in a row" in messages[0]

    run_with_reconciler(registry, settings, scenario)


@pytest.mark.timeout(60)  # before the fix stop() never returned: the test hung
def test_stop_returns_when_a_wake_and_the_cancellation_arrive_together(
    registry: Registry, settings: Settings
) -> None:
    """The loop is cancelled just as a wake (a change, a held request) completes its wait: stop() must
    still return (with asyncio.wait_for on 3.11 the cancellation was swallowed and the loop ran on)."""

    async def scenario() -> None:
        reconciler = Reconciler(registry, settings, make_targets(settings))
        await reconciler.start()
        try:
            for _ in range(20):  # each round: the wait gets its wake, and stop() cancels the loop then
                await asyncio.sleep(0.01)
                reconciler._wake.set()
                await asyncio.sleep(0)  # the wait has its result; the loop is about to resume
                started = time.monotonic()
                await reconciler.stop(stop_replicas=False)
                assert time.monotonic() - started < 2.0, "stop() waited for a loop that was not cancelled"
                reconciler._task = asyncio.create_task(reconciler._run())
        finally:
            await reconciler.stop(stop_replicas=True)

    try:
        asyncio.run(scenario())
    finally:
        _kill_leftovers(settings)
