"""`conveyor up` end to end with real processes under constant load from hey: version change, rollback,
a replica killed with SIGKILL, the control plane killed and restarted — zero failed requests each time.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup
from tests.fixtures.stack import Load, UpStack

pytestmark = pytest.mark.timeout(240)

SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: {model}
  replicas: {replicas}
"""
BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4] * 2}]}
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> dict[str, str]:
    """The registry backend: SQLite under the home, or a fresh PostgreSQL database (CONVEYOR_DATABASE_URL)."""
    if request.param == "sqlite":
        return {}
    return {"CONVEYOR_DATABASE_URL": request.getfixturevalue("postgres_db_url")}


@pytest.fixture
def stack(cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    yield from _stack(cli_env, tmp_path, processes)


@pytest.fixture
def any_db_stack(
    cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup, database: dict[str, str]
) -> Iterator[UpStack]:
    yield from _stack({**cli_env, **database}, tmp_path, processes)


def _stack(cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    env = {**cli_env, "CONVEYOR_REPLICA_ORPHAN_TIMEOUT_S": "60"}
    up = UpStack(processes, env, Path(env["CONVEYOR_HOME"]))
    register_version(up, tmp_path, seed=0)
    try:
        yield up
    finally:
        up.stop()


def register_version(stack: UpStack, tmp_path: Path, seed: int) -> None:
    """Register the next version of clf: the logistic regression of ``seed`` (other seeds, other answers)."""
    stack.cli("models", "register", "clf", str(build_logreg(tmp_path / f"clf{seed}.onnx", seed=seed)))


def write_spec(tmp_path: Path, model: str, replicas: int) -> str:
    path = tmp_path / f"clf-{model.replace(':', '-')}-{replicas}.yaml"
    path.write_text(SPEC.format(model=model, replicas=replicas))
    return str(path)


def infer_version(stack: UpStack) -> str:
    return stack.infer_version("clf", BODY)


def test_version_change_and_rollback_under_load_drop_nothing(stack: UpStack, tmp_path: Path) -> None:
    register_version(stack, tmp_path, seed=1)  # clf:2; the other tests need clf:1 only
    stack.start("-f", write_spec(tmp_path, "clf:1", 2))
    stack.wait(lambda: stack.serving("clf", "1", 2), what="2 replicas of version 1")
    assert infer_version(stack) == "1"

    load = Load(f"{stack.gateway_url}/v2/models/clf/infer", BODY, headers=stack.headers)
    try:
        # --wait returns once the new revision serves: replicas ready, old ones gone, the gateway routing.
        out = stack.cli("apply", "-f", write_spec(tmp_path, "clf:2", 2), "--wait", "--timeout", "60")
        assert "configured" in out.stdout and "deployment/clf rolled out: 2/2 replicas of clf:2" in out.stdout
        assert stack.serving("clf", "2", 2)
        out = stack.cli("rollback", "clf", "--wait", "--timeout", "60")
        assert "rolled out: 2/2 replicas of clf:1" in out.stdout
        assert stack.serving("clf", "1", 2)
    finally:
        result = load.stop()
    assert result.ok > 200, result.output
    assert result.failed == 0, result.output
    assert infer_version(stack) == "1"
    history = stack.api("/deployments/clf/revisions")["revisions"]
    assert [r["change_cause"].split()[0] for r in history] == ["apply", "apply", "rollback"]


def test_kill_9_of_a_replica_under_load_drops_nothing_and_replaces_it(stack: UpStack, tmp_path: Path) -> None:
    stack.start("-f", write_spec(tmp_path, "clf:1", 2))
    stack.wait(lambda: stack.serving("clf", "1", 2), what="2 ready replicas")
    victim = stack.replicas("clf")[0]
    load = Load(f"{stack.gateway_url}/v2/models/clf/infer", BODY, headers=stack.headers)
    try:
        stack.wait(lambda: load.running_for() > 1.0, what="load running")
        os.kill(victim["pid"], signal.SIGKILL)
        stack.wait(
            lambda: (
                stack.serving("clf", "1", 2)
                and victim["pid"] not in {r["pid"] for r in stack.replicas("clf")}
            ),
            what="a replacement replica",
        )
    finally:
        result = load.stop()
    assert result.failed == 0, result.output
    events = stack.api("/deployments/clf/events")["events"]
    assert any(e["kind"] == "ReplicaFailed" and victim["id"] in e["message"] for e in events), events


def test_control_plane_killed_and_restarted_under_load_drops_nothing(
    any_db_stack: UpStack, tmp_path: Path
) -> None:
    stack = any_db_stack
    stack.start("-f", write_spec(tmp_path, "clf:1", 2))
    stack.wait(lambda: stack.serving("clf", "1", 2), what="2 ready replicas")
    before = {r["id"]: r["pid"] for r in stack.replicas("clf")}
    epoch = stack.api("/health")["epoch"]
    old_pid = stack.control_plane_pid()
    load = Load(f"{stack.gateway_url}/v2/models/clf/infer", BODY, headers=stack.headers)
    try:
        stack.wait(lambda: load.running_for() > 1.0, what="load running")
        os.kill(old_pid, signal.SIGKILL)
        # `conveyor up` restarts it; the new one adopts the running replicas rather than replacing them.
        stack.wait(lambda: stack.api("/health")["epoch"] != epoch, what="a new control plane")
        assert stack.control_plane_pid() != old_pid
        stack.wait(lambda: stack.serving("clf", "1", 2), what="replicas adopted")
        assert {r["id"]: r["pid"] for r in stack.replicas("clf")} == before
        stack.wait(lambda: stack.api("/endpoints")["gateways"], what="the gateway reconnected")
    finally:
        result = load.stop()
    assert result.failed == 0, result.output
    assert result.ok > 100, result.output
