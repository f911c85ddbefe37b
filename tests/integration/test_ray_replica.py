"""The Ray replica actor's class run in this process, without a cluster (Ray only says which node it is on):
it starts a real replica process on a tcp channel and answers for it. The same class on a real cluster:
tests/e2e/test_ray_target.py."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.digests import EXIT_DATA_LOSS
from conveyor.targets import ray_replica
from conveyor.targets.base import Launch
from conveyor.targets.probe import probe
from conveyor.targets.ray import replica_arguments
from conveyor.targets.ray_replica import ReplicaActor
from tests.fixtures.models import build_logreg

START_S = 120.0  # a replica's start on a loaded 2-core machine


@pytest.fixture
def on_this_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_replica, "_node_ip", lambda: "127.0.0.1")
    monkeypatch.setattr(ray_replica, "_node_id", lambda: "node-1")


@pytest.fixture
def model(tmp_path: Path) -> tuple[bytes, str]:
    data = build_logreg(tmp_path / "m.onnx").read_bytes()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def actor(on_this_node: None) -> Iterator[ReplicaActor]:
    made = ReplicaActor("clf-abcdef-000001", orphan_after_s=3600)
    yield made
    made.end()  # whatever a test left running
    assert made._exited.wait(30)
    shutil.rmtree(made._dir)  # its log stays on a real node; not in this machine's /tmp


def arguments(sha256: str) -> list[str]:
    launch = Launch("clf", 1, "abcdef", "clf", "1", Path("unused"), sha256, {"sha256": f"clf:1={sha256}"})
    return replica_arguments(launch, "clf-abcdef-000001")[1]


def test_the_actor_starts_a_replica_on_its_node_keeping_no_model_copy_and_a_drain_ends_it(
    actor: ReplicaActor, model: tuple[bytes, str]
) -> None:
    data, sha256 = model
    started = actor.start(data, {}, arguments(sha256), {}, START_S)
    assert started["address"].startswith("tcp:127.0.0.1:") and started["node_id"] == "node-1", started
    assert asyncio.run(probe(started["address"]))
    assert actor.describe()["running"]
    assert sorted(p.name for p in actor._dir.iterdir()) == ["home", "replica.log"]  # no model copy left
    actor.drain()
    outcome = actor.wait()
    assert outcome["code"] == 0, outcome
    assert "conveyor replica listening on tcp:127.0.0.1:" in outcome["log"]


def test_bytes_that_are_not_the_versions_are_refused_with_the_data_loss_status(
    actor: ReplicaActor, model: tuple[bytes, str]
) -> None:
    data, sha256 = model
    started = actor.start(data + b"\0", {}, arguments(sha256), {}, START_S)
    assert started["address"] is None
    outcome = actor.wait()
    assert outcome["code"] == EXIT_DATA_LOSS, outcome  # the reconciler's ArtifactCorrupt, as for a local one
    assert "sha256" in outcome["log"] or "digest" in outcome["log"], outcome


def test_a_replica_drained_before_it_ran_never_serves(actor: ReplicaActor, model: tuple[bytes, str]) -> None:
    data, sha256 = model
    actor.drain()  # a starting replica the reconciler no longer wants: the drain waits for the process
    started = actor.start(data, {}, arguments(sha256), {}, START_S)
    outcome = actor.wait()
    assert outcome["code"] in (0, -15), (started, outcome)
    assert not actor.describe()["running"]
