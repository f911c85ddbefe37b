"""The control plane killed with SIGKILL at several points of a rollout, under unthrottled load from hey:
the restarted control plane must not stop the old replicas before every gateway routes to the new ones, so no
request fails (docs/operations.md, "Control-plane restarts").
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_up_under_load import BODY, infer_version, write_spec
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup
from tests.fixtures.stack import Load, UpStack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def stack(cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    env = {**cli_env, "CONVEYOR_REPLICA_ORPHAN_TIMEOUT_S": "60"}
    up = UpStack(processes, env, Path(env["CONVEYOR_HOME"]))
    for seed in (0, 1):
        up.cli("models", "register", "clf", str(build_logreg(tmp_path / f"clf{seed}.onnx", seed=seed)))
    try:
        yield up
    finally:
        up.stop()


def _apply(stack: UpStack, spec: str) -> None:
    """What `conveyor apply -f SPEC` sends (the file's documents to POST /apply), without starting a CLI
    process each time: 3 s of a loaded 2-core machine's time, four times, that this test does not judge."""
    from conveyor.spec import load_file

    body = {"documents": [r.to_dict() for r in load_file(spec)]}
    response = httpx.post(f"{stack.api_url}/api/v1/apply", json=body, headers=stack.headers, timeout=30)
    assert response.status_code == 200, response.text


def _kill_control_plane_when(stack: UpStack, when: Callable[[], bool], epoch: str) -> str:
    """SIGKILL the control plane as soon as ``when()`` holds; wait for `up` to start a new one (new epoch)."""
    stack.wait(when, timeout=60, what="the kill point")
    os.kill(stack.control_plane_pid(), signal.SIGKILL)
    return str(stack.wait(lambda: _new_epoch(stack, epoch), timeout=60, what="a restarted control plane"))


def _new_epoch(stack: UpStack, old: str) -> str | None:
    epoch = str(stack.api("/health")["epoch"])
    return epoch if epoch != old else None


def _after(seconds: float) -> Callable[[], bool]:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() >= deadline


def _new_replicas_ready(stack: UpStack, version: str, count: int) -> Callable[[], bool]:
    """The new version's replicas are all ready while the old ones still run: the control plane is about to
    drain the old ones (the point where a restart used to stop them before any gateway routed to the new)."""

    def check() -> bool:
        rows = stack.replicas("clf")
        new = [r for r in rows if r["version"] == version and r["state"] == "ready"]
        return len(new) >= count and any(r["version"] != version for r in rows)

    return check


def test_control_plane_killed_at_any_point_of_a_rollout_drops_nothing(stack: UpStack, tmp_path: Path) -> None:
    stack.start("-f", write_spec(tmp_path, "clf:1", 2))
    stack.wait(lambda: stack.serving("clf", "1", 2), what="2 replicas of version 1")
    epoch = str(stack.api("/health")["epoch"])
    # hey with 8 unthrottled workers, as the runs: every window where no replica serves shows.
    load = Load(
        f"{stack.gateway_url}/v2/models/clf/infer", BODY, workers=8, rate_per_worker=0, headers=stack.headers
    )
    answered: list[str] = []
    try:
        stack.wait(lambda: load.running_for() > 1.0, what="load running")
        version = "1"
        points: list[tuple[str, Callable[[], Callable[[], bool]]]] = [
            ("at once", lambda: _after(0.0)),
            ("after 0.4 s", lambda: _after(0.4)),
            ("after 1 s", lambda: _after(1.0)),
            ("new replicas ready", lambda: _new_replicas_ready(stack, version, 2)),
        ]
        for what, point in points:
            version = "2" if version == "1" else "1"
            _apply(stack, write_spec(tmp_path, f"clf:{version}", 2))
            epoch = _kill_control_plane_when(stack, point(), epoch)
            stack.wait(partial(stack.serving, "clf", version, 2), timeout=90, what=f"rolled out ({what})")
            answered.append(what)
            assert load.running_for() > 0
    finally:
        result = load.stop()
    print(f"control plane killed at: {', '.join(answered)}; hey: {result.statuses}, errors {result.errors}")
    assert len(answered) == 4
    assert result.failed == 0, result.output
    assert result.ok > 1000, result.output
    assert infer_version(stack) == version
