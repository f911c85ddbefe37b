"""`conveyor up`, then `conveyor apply` without --wait and load at once (hey, 8 workers): a deployment whose
first replica is starting holds its requests and answers them, and the gateway's /v2/health/ready says 200
only once every deployment it routes can answer (docs/serving.md, Readiness)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
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
  name: {name}
spec:
  model: tiny:1
  replicas: 1
"""
BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4] * 2}]}
)
LOAD_S = 3.0


@pytest.fixture
def stack(cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    up = UpStack(processes, cli_env, Path(cli_env["CONVEYOR_HOME"]))
    up.cli("models", "register", "tiny", str(build_logreg(tmp_path / "tiny.onnx")))
    try:
        up.start()
        yield up
    finally:
        up.stop()


def apply(stack: UpStack, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(name=name))
    stack.cli("apply", "-f", str(path))  # no --wait: it returns while the replica starts


def load_for(stack: UpStack, name: str, seconds: float) -> tuple[int, int, str]:
    load = Load(f"{stack.gateway_url}/v2/models/{name}/infer", BODY, headers=stack.headers)
    try:
        time.sleep(seconds)
        load.running_for()  # hey still running
    finally:
        result = load.stop()
    return result.ok, result.failed, result.output


def test_load_sent_once_the_gateway_is_ready_after_apply_without_wait_is_all_answered(
    stack: UpStack, tmp_path: Path
) -> None:
    apply(stack, tmp_path, "first")
    ready = f"{stack.gateway_url}/v2/health/ready"
    stack.wait(lambda: httpx.get(ready, timeout=5).status_code == 200, timeout=90, what="gateway ready")
    ok, failed, output = load_for(stack, "first", LOAD_S)
    assert failed == 0 and ok > 100, output


def test_load_sent_at_once_after_apply_without_wait_is_held_then_answered(
    stack: UpStack, tmp_path: Path
) -> None:
    apply(stack, tmp_path, "second")
    ready = httpx.get(f"{stack.gateway_url}/v2/health/ready", timeout=5)
    model = httpx.get(f"{stack.gateway_url}/v2/models/second/ready", timeout=5, headers=stack.headers)
    ok, failed, output = load_for(stack, "second", LOAD_S)
    assert failed == 0 and ok > 100, output
    # While its replica started, neither the gateway nor the model said ready (a fast start may beat us).
    if ready.status_code != 200:
        assert ready.json() == {"ready": False}
        assert model.status_code == 400, model.text
        assert model.json()["error"] == "no replica of second:1 is ready yet (its replicas are starting)"
    assert httpx.get(f"{stack.gateway_url}/v2/health/ready", timeout=5).status_code == 200
