"""`conveyor up -f` with ``placement: inprocess``: the version runs inside the gateway (no replica process),
a request sent right after the stack starts is held while the gateway loads it and then answered, a version
change under load from hey loses nothing, and one copy per gateway is all it offers (replicas: 2 refused)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.models import LOGREG_BODY
from tests.fixtures.processes import ProcessGroup, children
from tests.fixtures.stack import Load, UpStack, versions_stack

pytestmark = pytest.mark.timeout(240)

SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: {model}
  replicas: {replicas}
  placement: inprocess
"""


@pytest.fixture
def stack(cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    yield from versions_stack(processes, cli_env, tmp_path)


def write_spec(tmp_path: Path, model: str, replicas: int = 1) -> str:
    path = tmp_path / f"clf-{model.replace(':', '-')}-{replicas}.yaml"
    path.write_text(SPEC.format(model=model, replicas=replicas))
    return str(path)


def infer_version(stack: UpStack) -> str:
    return stack.infer_version("clf", LOGREG_BODY)


def rolled_out(stack: UpStack, version: str) -> bool:
    d = stack.api("/deployments/clf")
    counts = d["replicas"]
    done = counts["ready"] == counts["desired"] == counts["total"] == 1 and bool(d["routed"])
    return done and d["model"] == f"clf:{version}"


def replica_processes(stack: UpStack) -> list[str]:
    """Command lines of replica processes anywhere under `conveyor up` (the control plane starts them)."""
    assert stack.proc is not None
    found: list[str] = []
    todo = [stack.proc.pid]
    while todo:
        for pid, cmd in children(todo.pop()).items():
            todo.append(pid)
            if "conveyor.server" in cmd:
                found.append(cmd)
    return found


def test_inprocess_placement_serves_from_the_gateway_and_changes_version_under_load_losing_nothing(
    stack: UpStack, tmp_path: Path
) -> None:
    # --no-wait: the first request goes out while the gateway is still loading the model: held, then 200.
    stack.start("-f", write_spec(tmp_path, "clf:1"), "--no-wait")
    assert infer_version(stack) == "1"
    stack.wait(lambda: rolled_out(stack, "1"), what="clf:1 ready in every gateway")

    # No replica process: the control plane lists none, records none, and none runs.
    assert stack.replicas("clf") == []
    state = stack.home / "run" / "replicas.json"
    assert not state.exists() or json.loads(state.read_text()).get("replicas", []) == []
    assert replica_processes(stack) == []
    assert stack.api("/deployments/clf")["placement"] == "inprocess"
    assert "placement  inprocess" in stack.cli("describe", "deployment", "clf").stdout
    assert "inprocess" in stack.cli("get", "deployments").stdout

    load = Load(f"{stack.gateway_url}/v2/models/clf/infer", LOGREG_BODY, headers=stack.headers)
    try:
        stack.wait(lambda: load.running_for() > 1.0, what="load running")
        stack.cli("apply", "-f", write_spec(tmp_path, "clf:2"))
        stack.wait(lambda: rolled_out(stack, "2"), what="clf:2 ready in every gateway")
        stack.wait(lambda: infer_version(stack) == "2", what="the bare name reaching version 2")
        stack.wait(lambda: load.running_for() > 6.0, what="load after the change")
    finally:
        result = load.stop()
    assert result.failed == 0, result.output
    assert result.ok > 200, result.output
    assert stack.replicas("clf") == [] and replica_processes(stack) == []
    routes = stack.api("/routing")["routes"]
    assert [(r["version"], r["default"]) for r in routes] == [("2", True)], routes  # version 1 left


def test_inprocess_placement_with_two_replicas_is_refused_naming_the_field(
    stack: UpStack, tmp_path: Path
) -> None:
    stack.start()
    doc = {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "clf"},
        "spec": {"model": "clf:1", "replicas": 2, "placement": "inprocess"},
    }
    response = httpx.post(
        f"{stack.api_url}/api/v1/apply", json={"documents": [doc]}, timeout=30, headers=stack.headers
    )
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert "spec.placement" in error and "replicas: 2" in error, error

    out = stack.cli("apply", "-f", write_spec(tmp_path, "clf:1", replicas=2), check=False)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "spec.placement" in lines[0] and "replicas: 2" in lines[0], out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert stack.api("/deployments")["deployments"] == []


def test_switching_placement_both_ways_under_load_loses_nothing(stack: UpStack, tmp_path: Path) -> None:
    process = tmp_path / "clf-process.yaml"
    process.write_text(
        SPEC.format(model="clf:1", replicas=2).replace("placement: inprocess", "placement: process")
    )
    stack.start("-f", str(process))
    load = Load(f"{stack.gateway_url}/v2/models/clf/infer", LOGREG_BODY, headers=stack.headers)
    try:
        stack.wait(lambda: load.running_for() > 1.0, what="load running")
        # Into the gateway: the replica processes stop once every gateway serves version 2 itself.
        stack.cli("apply", "-f", write_spec(tmp_path, "clf:2"), "--wait", "--timeout", "60")
        assert infer_version(stack) == "2"
        stack.wait(lambda: stack.replicas("clf") == [] and replica_processes(stack) == [], what="none left")
        # And back: the in-process copy leaves the table once the new replica processes are ready.
        stack.cli("apply", "-f", str(process), "--wait", "--timeout", "60")
        assert stack.serving("clf", "1", 2) and infer_version(stack) == "1"
        assert [r["version"] for r in stack.api("/routing")["routes"]] == ["1"]
    finally:
        result = load.stop()
    assert result.failed == 0, result.output
    assert result.ok > 100, result.output
