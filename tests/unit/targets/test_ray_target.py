"""The ray target's decisions that need no cluster: what is missing to run it, and what a replica actor is
started with (tests/e2e/test_ray_target.py runs it on a real two-node cluster)."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conveyor import errors
from conveyor.control.management_ops import validate_documents
from conveyor.settings import Settings, get_settings
from conveyor.targets.base import Launch
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

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.refs = {"start": Ref(), "wait": Ref()}
        self.killed = False

    def __getattr__(self, method: str) -> Any:
        handle = self

        class Method:
            def remote(self, *args: Any) -> Ref:
                handle.calls.append(method)
                return handle.refs.get(method, Ref())

        return Method()


class FakeRay:
    def __init__(self) -> None:
        self.handles: list[Handle] = []
        self.options: dict[str, Any] = {}

    def options_(self, **options: Any) -> FakeRay:
        self.options = options
        return self

    def remote(self, *args: Any) -> Handle:
        self.handles.append(Handle())
        return self.handles[-1]

    def wait(self, refs: list[Ref], **_: Any) -> tuple[list[Ref], list[Ref]]:
        return [r for r in refs if r.ready], [r for r in refs if not r.ready]

    def get(self, ref: Ref, timeout: float | None = None) -> Any:
        if ref.error is not None:
            raise ref.error
        return ref.value

    def put(self, data: bytes) -> Ref:
        ref = Ref(data)
        ref.ready = True
        return ref

    def kill(self, handle: Handle, no_restart: bool = True) -> None:
        handle.killed = True


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RayTarget, FakeRay, Launch]:
    monkeypatch.setattr(RayTarget, "_connect", lambda self: None)
    target = RayTarget(Settings(home=tmp_path, ray_address="127.0.0.1:6379"))
    ray = FakeRay()
    remote = SimpleNamespace(options=ray.options_)
    target._ray, target._remote = ray, remote
    target._connected.set()
    data = b"an onnx model"
    (tmp_path / "m.onnx").write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    plan = Launch("clf", 1, "abcdef1234", "clf", "1", tmp_path / "m.onnx", sha256, {"intra_op_threads": 2})
    return target, ray, plan


def test_a_replica_is_a_detached_spread_actor_whose_address_comes_once_it_listens(
    fake: tuple[RayTarget, FakeRay, Launch],
) -> None:
    target, ray, plan = fake
    record = target.create(plan)
    assert (record.target, record.address, record.pid) == ("ray", "", 0)
    assert record.details == {"actor": f"conveyor-{record.id}", "namespace": "conveyor"}
    assert ray.options["lifetime"] == "detached" and ray.options["scheduling_strategy"] == "SPREAD"
    assert (ray.options["num_cpus"], ray.options["max_restarts"]) == (2, 0)
    (handle,) = ray.handles
    assert handle.calls == ["start", "wait"]
    assert target.endpoint(record) is None and target.alive(record)
    handle.refs["start"].resolve({"address": "tcp:10.0.0.7:4242", "node": "10.0.0.7", "pid": 9})
    assert target.endpoint(record) == "tcp:10.0.0.7:4242"


def test_a_replica_that_refused_its_bytes_is_gone_with_its_status_and_log_after_it_is_forgotten(
    fake: tuple[RayTarget, FakeRay, Launch],
) -> None:
    target, ray, plan = fake
    record = target.create(plan)
    ray.handles[0].refs["wait"].resolve({"code": 5, "log": "a | b | error: model clf:1: digest mismatch"})
    assert not target.alive(record)
    assert target.exit_code(record) == 5
    target.forget(record)  # the reconciler reads the log after forgetting it (ArtifactCorrupt's why)
    assert ray.handles[0].killed
    assert target.log_tail(record, lines=1) == "error: model clf:1: digest mismatch"
    assert target.exit_code(record) == 5


def test_an_actor_that_died_is_a_replica_killed_and_one_ended_is_killed_after_its_grace(
    fake: tuple[RayTarget, FakeRay, Launch], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, ray, plan = fake
    died, hung = target.create(plan), target.create(plan)
    ray.handles[0].refs["wait"].resolve(error=RuntimeError("actor died"))
    assert not target.alive(died) and target.exit_code(died) is None
    monkeypatch.setattr("conveyor.targets.ray.END_GRACE_S", 0.0)
    target.stop(hung, drain=False)
    assert ray.handles[1].calls[-1] == "end" and not ray.handles[1].killed
    assert target.alive(hung)  # the grace is over: ray.kill, and alive until the actor's death is seen
    assert ray.handles[1].killed


def test_before_the_cluster_answers_a_create_is_unavailable_and_retried_by_the_reconciler(
    fake: tuple[RayTarget, FakeRay, Launch],
) -> None:
    target, _, plan = fake
    target._connected.clear()
    target._connect_error = "Failed to connect to GCS at 127.0.0.1:6379"
    with pytest.raises(errors.Unavailable, match="cannot connect: Failed to connect to GCS"):
        target.create(plan)
