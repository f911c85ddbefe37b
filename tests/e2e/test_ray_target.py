"""`target: ray` end to end on a real two-node Ray cluster (a head and a second node, each `ray start`):
`conveyor up` connected by CONVEYOR_RAY_ADDRESS, a deployment's replicas as Ray actors spread over both
nodes, inference through Conveyor's gateway, a version change under load, an actor killed under load and
the control plane killed under load (its successor adopts the actors by name), each with no failed request.
One cluster and one stack for the module (starting them is most of its time).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fixtures.processes import ProcessGroup
from tests.fixtures.ray_cluster import RayCluster
from tests.fixtures.stack import Load, UpStack, versions_stack

pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: clf:{version}
  replicas: 2
  target: ray
  resources:
    threads: 1
"""
BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4] * 2}]}
)
# Ray's own client, in a process of its own (the test process stays no Ray driver): where each named actor
# runs, or kill one.
RAY_SCRIPT = """\
import json, sys, ray
ray.init(address=sys.argv[1], namespace="conveyor", log_to_driver=False, logging_level="ERROR")
command, names = sys.argv[2], sys.argv[3:]
if command == "kill":
    for name in names:
        ray.kill(ray.get_actor(name))
    print(json.dumps({}))
else:
    print(json.dumps({n: ray.get(ray.get_actor(n).describe.remote(), timeout=30) for n in names}))
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with tempfile.TemporaryDirectory(prefix="conveyor-ray-test-") as root:
        ray = RayCluster(Path(root))
        try:
            ray.start()
            yield ray
        finally:
            left = ray.stop()
    assert left == [], f"processes of the cluster still ran after it stopped: {left}"


@pytest.fixture(scope="module")
def stack(cluster: RayCluster) -> Iterator[UpStack]:
    group = ProcessGroup()
    with tempfile.TemporaryDirectory(prefix="conveyor-ray-up-") as tmp:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
            **cluster.env,
            "CONVEYOR_HOME": f"{tmp}/home",
            "CONVEYOR_RAY_ADDRESS": cluster.address,
            "CONVEYOR_REPLICA_ORPHAN_TIMEOUT_S": "60",
        }
        try:
            yield from versions_stack(group, env, Path(tmp))
        finally:
            group.stop_all()


def spec(tmp: Path, version: int) -> str:
    path = tmp / f"clf-ray-{version}.yaml"
    path.write_text(SPEC.format(version=version))
    return str(path)


def ray_call(cluster: RayCluster, command: str, names: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", RAY_SCRIPT, cluster.address, command, *names],
        env={**os.environ, **cluster.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def steady_load(stack: UpStack) -> Load:
    """80 requests a second from 4 connections: what two small replicas answer on a shared 2-core machine."""
    url = f"{stack.gateway_url}/v2/models/clf/infer"
    return Load(url, BODY, workers=4, rate_per_worker=20, headers=stack.headers)


def actors(rows: list[dict[str, Any]]) -> list[str]:
    return [f"conveyor-{r['id']}" for r in rows]


@pytest.fixture(scope="module")
def serving(stack: UpStack, tmp_path_factory: pytest.TempPathFactory) -> UpStack:
    """Version 1 of clf on two actors, applied with `conveyor up -f`."""
    stack.start("-f", spec(tmp_path_factory.mktemp("specs"), 1))
    stack.wait(lambda: stack.serving("clf", "1", 2), timeout=180, what="2 ray replicas of version 1")
    return stack


def test_inference_through_the_gateway_is_answered_by_ray_actors_on_both_nodes(
    serving: UpStack, cluster: RayCluster
) -> None:
    rows = serving.replicas("clf")
    assert all(r["address"].startswith("tcp:") and r["pid"] == 0 for r in rows), rows
    assert serving.infer_version("clf", BODY) == "1"
    described = ray_call(cluster, "describe", actors(rows))
    assert all(d["running"] for d in described.values()), described
    assert len({d["node_id"] for d in described.values()}) == 2, described  # SPREAD: one per node


def test_a_version_change_under_load_drops_nothing(
    serving: UpStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    load = steady_load(serving)
    try:
        serving.wait(lambda: load.running_for() > 1.0, what="load running")
        out = serving.cli(
            "apply", "-f", spec(tmp_path_factory.mktemp("specs"), 2), "--wait", "--timeout", "180"
        )
        assert "deployment/clf rolled out: 2/2 replicas of clf:2" in out.stdout, out.stdout
    finally:
        result = load.stop()
    assert result.ok > 50, result.output
    assert result.failed == 0, result.output
    assert serving.infer_version("clf", BODY) == "2"


def test_an_actor_killed_under_load_is_replaced_with_no_failed_request(
    serving: UpStack, cluster: RayCluster
) -> None:
    serving.wait(lambda: len(serving.replicas("clf")) == 2, timeout=120, what="2 replicas")
    victim = serving.replicas("clf")[0]
    load = steady_load(serving)
    try:
        serving.wait(lambda: load.running_for() > 1.0, what="load running")
        ray_call(cluster, "kill", actors([victim]))
        version = victim["version"]
        serving.wait(
            lambda: (
                serving.serving("clf", version, 2)
                and victim["id"] not in {r["id"] for r in serving.replicas("clf")}
            ),
            timeout=180,
            what="a replacement actor",
        )
    finally:
        result = load.stop()
    assert result.failed == 0, result.output
    assert result.ok > 50, result.output
    events = serving.api("/deployments/clf/events")["events"]
    assert any(e["kind"] == "ReplicaFailed" and victim["id"] in e["message"] for e in events), events


def test_a_restarted_control_plane_adopts_the_actors_by_name_under_load(serving: UpStack) -> None:
    serving.wait(lambda: len(serving.replicas("clf")) == 2, timeout=120, what="2 replicas")
    rows = serving.replicas("clf")
    version = rows[0]["version"]
    serving.wait(lambda: serving.serving("clf", version, 2), timeout=120, what="2 ready replicas")
    before = {r["id"]: r["address"] for r in serving.replicas("clf")}
    epoch = serving.api("/health")["epoch"]
    old_pid = serving.control_plane_pid()
    load = steady_load(serving)
    try:
        serving.wait(lambda: load.running_for() > 1.0, what="load running")
        os.kill(old_pid, signal.SIGKILL)  # `conveyor up` starts another; the actors are detached
        serving.wait(lambda: serving.api("/health")["epoch"] != epoch, 120, "a new control plane")
        serving.wait(lambda: serving.serving("clf", version, 2), timeout=120, what="the actors adopted")
        assert {r["id"]: r["address"] for r in serving.replicas("clf")} == before
    finally:
        result = load.stop()
    assert result.failed == 0, result.output
    assert result.ok > 50, result.output
