"""The ray target's decisions that need no cluster: what is missing to run it, and what a replica actor is
started with (tests/e2e/test_ray_target.py runs it on a real two-node cluster)."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import threading
import time
from collections.abc import Iterator
from concurrent.futures import wait as wait_futures
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conveyor import errors
from conveyor.control.management_ops import validate_documents
from conveyor.digests import EXIT_DATA_LOSS
from conveyor.settings import Settings, get_settings
from conveyor.targets.base import Launch, ReplicaRecord, new_record
from conveyor.targets.ray import RayTarget, ray_problem, ray_target, replica_arguments


def launch(options: dict[str, Any]) -> Launch:
    return Launch("clf", 3, "abcdef1234", "iris", "2", Path("/nowhere.onnx"), "ab" * 32, options)


def test_without_an_address_the_ray_target_is_refused_naming_the_setting(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert ray_problem(settings) == (
        "the ray target needs a Ray cluster: set CONVEYOR_RAY_ADDRESS to its head (HOST:PORT) on the "
        "control plane (docs/ray.md)"
    )
    with pytest.raises(errors.InvalidInput, match="CONVEYOR_RAY_ADDRESS"):
        ray_target(settings)


def test_without_the_ray_extra_the_ray_target_is_refused_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "ray" else real(name))
    problem = ray_problem(Settings(home=tmp_path, ray_address="127.0.0.1:6379"))
    assert problem == "the ray target needs the ray extra on the control plane: pip install 'conveyor[ray]'"


def test_a_replica_actor_gets_a_local_replicas_options_on_a_tcp_channel_of_its_node() -> None:
    options = {"max_batch_size": 8, "intra_op_threads": 2, "cache_ttl": None, "sha256": "clf:2=" + "ab" * 32}
    files, args = replica_arguments(launch(options), "clf-abcdef-123456")
    assert files == {}
    assert args == [
        "--model",
        "clf:2={dir}/model.onnx",
        "--channel",
        "tcp:{ip}:0",
        "--replica-id",
        "clf-abcdef-123456",
        "--max-batch-size",
        "8",
        "--intra-op-threads",
        "2",
        "--sha256",
        "clf:2=" + "ab" * 32,
    ]


def test_a_monitor_document_travels_with_the_call_and_is_read_from_the_actors_folder(tmp_path: Path) -> None:
    doc = tmp_path / "monitor-1234.json"
    doc.write_bytes(b'{"drift": {}}')
    files, args = replica_arguments(launch({"monitor": f"clf:2={doc}"}), "r")
    assert files == {"monitor.json": b'{"drift": {}}'}
    assert args[-2:] == ["--monitor", "clf:2={dir}/monitor.json"]


def test_a_monitor_document_that_cannot_be_read_is_unavailable_naming_it(tmp_path: Path) -> None:
    with pytest.raises(errors.Unavailable, match=r"cannot read .*gone\.json"):
        replica_arguments(launch({"monitor": f"clf:2={tmp_path / 'gone.json'}"}), "r")


@pytest.fixture
def ray_address(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's settings name a Ray cluster (apply reads them; nothing connects)."""
    monkeypatch.setenv("CONVEYOR_RAY_ADDRESS", "127.0.0.1:6379")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def ray_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "clf"},
        "spec": {"model": "m:1", "replicas": 2, "target": "ray", **spec},
    }


@pytest.mark.usefixtures("ray_address")
def test_with_an_address_a_ray_deployment_is_accepted_but_not_in_the_gateways_nor_on_a_gpu() -> None:
    (resource,) = validate_documents([ray_doc()])
    assert resource.spec.target == "ray"
    with pytest.raises(errors.InvalidInput) as caught:
        validate_documents([ray_doc(placement="inprocess", replicas=1)])
    assert caught.value.message == (
        "documents[0].spec.placement: inprocess runs in the gateways; with target: ray leave it out"
    )
    with pytest.raises(errors.InvalidInput) as caught:
        validate_documents([ray_doc(resources={"gpu": 1})])
    assert caught.value.message == (
        "documents[0].spec.resources.gpu: the ray target runs replicas on CPUs only"
    )


# -- the target's state machine over a stand-in for Ray's API (the calls targets/ray.py makes) -----------


class Ref:
    """An ObjectRef: ready or not, a value or an error."""

    def __init__(self, value: Any = None) -> None:
        self.value, self.ready = value, False
        self.error: Exception | None = None

    def resolve(self, value: Any = None, error: Exception | None = None) -> None:
        self.value, self.error, self.ready = value, error, True


class Handle:
    """An actor handle recording the methods called on it."""

    def __init__(self, rid: str) -> None:
        self.rid = rid
        self.calls: list[str] = []
        self.refs = {"start": Ref(), "wait": Ref(), "describe": Ref({"running": True})}
        self.refs["describe"].ready = True
        self.killed = False

    def __getattr__(self, method: str) -> Any:
        handle = self

        class Method:
            def remote(self, *args: Any) -> Ref:
                handle.calls.append(method)
                return handle.refs.get(method, Ref())

        return Method()


class FakeRay:
    """Ray's API as targets/ray.py calls it, from the loop and from its threads; ``put_s``: how long a put
    takes (a large model)."""

    def __init__(self) -> None:
        self.handles: dict[str, Handle] = {}
        self.options: dict[str, Any] = {}
        self.put_s = 0.0
        self.puts = 0
        self.actors: dict[str, Handle] = {}
        """What ``get_actor`` finds, by name."""

    def options_(self, **options: Any) -> FakeRay:
        self.options = options
        return self

    def remote(self, rid: str, *args: Any) -> Handle:
        self.handles[rid] = Handle(rid)
        return self.handles[rid]

    def wait(self, refs: list[Ref], **_: Any) -> tuple[list[Ref], list[Ref]]:
        return [r for r in refs if r.ready], [r for r in refs if not r.ready]

    def get(self, ref: Ref, timeout: float | None = None) -> Any:
        if ref.error is not None:
            raise ref.error
        return ref.value

    def put(self, data: bytes) -> Ref:
        time.sleep(self.put_s)
        self.puts += 1
        ref = Ref(data)
        ref.ready = True
        return ref

    def get_actor(self, name: str, namespace: str) -> Handle:
        if name not in self.actors:
            raise ValueError(f"Failed to look up actor with name '{name}'")
        return self.actors[name]

    def kill(self, handle: Handle, no_restart: bool = True) -> None:
        handle.killed = True


def made(target: RayTarget, record: ReplicaRecord, timeout_s: float = 10.0) -> None:
    """Wait until the target's thread made the replica's actor (or failed to)."""
    deadline = time.monotonic() + timeout_s
    while target.alive(record) and target._actors[record.id].making is not None:
        assert time.monotonic() < deadline, "the actor was not made in time"
        time.sleep(0.01)


def stand_in(tmp_path: Path, **settings: Any) -> tuple[RayTarget, FakeRay, Launch]:
    target = RayTarget(Settings(home=tmp_path, ray_address="127.0.0.1:6379", **settings))
    ray = FakeRay()
    remote = SimpleNamespace(options=ray.options_)
    target._ray, target._remote = ray, remote
    target._connected.set()
    data = b"an onnx model"
    (tmp_path / "m.onnx").write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    plan = Launch("clf", 1, "abcdef1234", "clf", "1", tmp_path / "m.onnx", sha256, {"intra_op_threads": 2})
    return target, ray, plan


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RayTarget, "_connect", lambda self: None)


@pytest.fixture
def fake(tmp_path: Path, no_connect: None) -> tuple[RayTarget, FakeRay, Launch]:
    return stand_in(tmp_path)


def test_a_replica_is_a_detached_spread_actor_whose_address_comes_once_it_listens(
    fake: tuple[RayTarget, FakeRay, Launch],
) -> None:
    target, ray, plan = fake
    record = target.create(plan)
    assert (record.target, record.address, record.pid) == ("ray", "", 0)
    assert record.details == {"actor": f"conveyor-{record.id}", "namespace": "conveyor"}
    made(target, record)
    assert ray.options["lifetime"] == "detached" and ray.options["scheduling_strategy"] == "SPREAD"
    assert (ray.options["num_cpus"], ray.options["max_restarts"]) == (2, 0)
    handle = ray.handles[record.id]
    assert handle.calls == ["start", "wait"]
    assert target.endpoint(record) is None and target.alive(record)
    handle.refs["start"].resolve({"address": "tcp:10.0.0.7:4242", "node": "10.0.0.7", "pid": 9})
    assert target.endpoint(record) == "tcp:10.0.0.7:4242"


def test_a_replica_that_refused_its_bytes_is_gone_with_its_status_and_log_after_it_is_forgotten(
    fake: tuple[RayTarget, FakeRay, Launch],
) -> None:
    target, ray, plan = fake
    record = target.create(plan)
    made(target, record)
    ray.handles[record.id].refs["wait"].resolve(
        {"code": 5, "log": "a | b | error: model clf:1: digest mismatch"}
    )
    assert not target.alive(record)
    assert target.exit_code(record) == 5
    target.forget(record)  # the reconciler reads the log after forgetting it (ArtifactCorrupt's why)
    assert ray.handles[record.id].killed
    assert target.log_tail(record, lines=1) == "error: model clf:1: digest mismatch"
    assert target.exit_code(record) == 5


def test_an_actor_that_died_is_a_replica_killed_and_one_ended_is_killed_after_its_grace(
    fake: tuple[RayTarget, FakeRay, Launch], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, ray, plan = fake
    died, hung = target.create(plan), target.create(plan)
    made(target, died)
    made(target, hung)
    ray.handles[died.id].refs["wait"].resolve(error=RuntimeError("actor died"))
    assert not target.alive(died) and target.exit_code(died) is None
    monkeypatch.setattr("conveyor.targets.ray.END_GRACE_S", 0.0)
    target.stop(hung, drain=False)
    assert ray.handles[hung.id].calls[-1] == "end" and not ray.handles[hung.id].killed
    assert target.alive(hung)  # the grace is over: ray.kill, and alive until the actor's death is seen
    assert ray.handles[hung.id].killed
    assert ray.puts == 1  # one put for both replicas of the version


def test_before_the_cluster_answers_a_create_is_unavailable_and_retried_by_the_reconciler(
    fake: tuple[RayTarget, FakeRay, Launch],
) -> None:
    target, _, plan = fake
    target._connected.clear()
    target._connect_error = "Failed to connect to GCS at 127.0.0.1:6379"
    with pytest.raises(errors.Unavailable, match="cannot connect: Failed to connect to GCS"):
        target.create(plan)


# -- nothing slow on the control plane's loop: the put, the actor's creation and adoption run in threads --


async def ticking(stop: asyncio.Event) -> float:
    """The longest gap between two wakes of a 10 ms timer on this loop until ``stop``: what every other
    task of the control plane (reconcile, probes, the gateways' table) would have waited."""
    longest, last = 0.0, time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest


def test_the_loop_keeps_ticking_while_a_large_model_is_put_in_the_object_store(
    fake: tuple[RayTarget, FakeRay, Launch],
) -> None:
    asyncio.run(put_slowly(*fake))


async def put_slowly(target: RayTarget, ray: FakeRay, plan: Launch) -> None:
    ray.put_s = 2.5  # a large model's put
    stop = asyncio.Event()
    ticker = asyncio.create_task(ticking(stop))
    await asyncio.sleep(0.05)
    began = time.monotonic()
    record = target.create(plan)
    assert time.monotonic() - began < 0.5  # the record at once
    while target.alive(record) and record.id not in ray.handles:
        assert time.monotonic() - began < 10, "the actor was never created"
        assert target.endpoint(record) is None  # the reconciler asks at every step meanwhile
        await asyncio.sleep(0.02)
    stop.set()
    longest = await ticker
    assert time.monotonic() - began >= 2.5  # the put did take its time, off the loop
    assert longest < 1.0, f"the loop stalled {longest:.2f}s"
    made(target, record)
    assert target.alive(record) and ray.handles[record.id].calls == ["start", "wait"]


def test_adoption_waits_for_the_cluster_in_a_thread_and_finds_the_actor_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(adopt_while_connecting(tmp_path, monkeypatch))


async def adopt_while_connecting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connects: list[float] = []

    def connect_slowly(self: RayTarget) -> None:  # the cluster answers 2.5 s after the control plane starts
        connects.append(time.monotonic())
        if len(connects) == 1:
            self._connecting = threading.Timer(2.5, self._connected.set)
            self._connecting.start()

    monkeypatch.setattr(RayTarget, "_connect", connect_slowly)
    target, ray, plan = stand_in(tmp_path)
    target._connected.clear()
    here, gone = Handle("here"), Handle("gone")
    ray.actors["conveyor-here"] = here
    records = [
        new_record(plan, rid, target="ray", address="tcp:10.0.0.7:1", details={"actor": f"conveyor-{rid}"})
        for rid in ("here", "gone")
    ]
    stop = asyncio.Event()
    ticker = asyncio.create_task(ticking(stop))
    began = time.monotonic()
    assert [target.adopt(r) for r in records] == [True, True]  # at once: found (or not) in a thread
    assert time.monotonic() - began < 0.5
    assert target.alive(records[0]) and target.alive(records[1])
    while target.alive(records[1]):
        assert time.monotonic() - began < 10, "the adoption never ended"
        target.keepalive()
        await asyncio.sleep(0.02)
    stop.set()
    assert await ticker < 1.0
    assert time.monotonic() - began >= 2.5
    made(target, records[0])
    assert target.alive(records[0]) and here.calls == ["describe", "touch", "wait"]
    assert target.endpoint(records[0]) == "tcp:10.0.0.7:1"
    assert target.exit_code(records[1]) is None
    assert target.log_tail(records[1]) == "error: Failed to look up actor with name 'conveyor-gone'"
    assert not gone.calls


def test_a_model_whose_bytes_are_not_the_versions_is_a_replica_refusing_them(
    fake: tuple[RayTarget, FakeRay, Launch],
) -> None:
    target, ray, plan = fake
    (plan.model_file).write_bytes(b"other bytes")
    record = target.create(plan)
    made(target, record)
    assert not target.alive(record) and not ray.handles and ray.puts == 0
    assert target.exit_code(record) == EXIT_DATA_LOSS  # the reconciler's ArtifactCorrupt
    assert target.log_tail(record, lines=1).startswith("error: model clf:1: artifact ")
    assert "is corrupt: expected sha256" in target.log_tail(record, lines=1)


def test_a_replica_stopped_or_late_while_its_model_is_put_never_runs_and_its_actor_is_killed_once_made(
    tmp_path: Path, no_connect: None
) -> None:
    target, ray, plan = stand_in(tmp_path, replica_start_timeout_s=0.5)
    ray.put_s = 1.0
    stopped, late = target.create(plan), target.create(plan)
    making = [target._actors[r.id].making for r in (stopped, late)]
    time.sleep(0.05)  # both threads under way: one puts, the other waits for that put
    target.stop(stopped, drain=False)
    assert not target.alive(stopped) and target.exit_code(stopped) is None
    time.sleep(0.6)
    assert not target.alive(late)
    assert target.log_tail(late) == (
        "error: model not in Ray's object store and actor not created within 0.5s"
    )
    wait_futures([f for f in making if f is not None], timeout=10)
    made = [h for f in making if f is not None and f.exception() is None for h in f.result()[:1]]
    assert made  # the put finished and the actor of its replica was created (the other's wait may time out)
    deadline = time.monotonic() + 10
    while not all(h.killed for h in made):  # by the Future's callback, which runs after its waiters wake
        assert time.monotonic() < deadline, "the actors made after all were not killed"
        time.sleep(0.02)
    target.forget(stopped)
    target.forget(late)
    assert target._artifacts == {}
