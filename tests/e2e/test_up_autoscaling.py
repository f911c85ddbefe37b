"""Autoscaling end to end: a load step from 1 to 32 clients scales out within the configured windows and back
in after the load stops, one decision per stabilization window; scale to zero holds a request until a
replica is ready.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import orjson
import pytest

from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup
from tests.fixtures.stack import Load, UpStack

pytestmark = pytest.mark.timeout(240)

BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}
)
WINDOW_S, UP_S, DOWN_S = 2, 2, 4
AUTOSCALED = f"""\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: clf:1
  autoscaling:
    minReplicas: 1
    maxReplicas: 3
    targetInFlight: 2
    windowSeconds: {WINDOW_S}
    scaleUpStabilizationSeconds: {UP_S}
    scaleDownStabilizationSeconds: {DOWN_S}
"""
TO_ZERO = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: clf:1
  autoscaling:
    minReplicas: 0
    maxReplicas: 2
    windowSeconds: 1
    scaleDownStabilizationSeconds: 2
    scaleToZero: true
    holdTimeoutSeconds: 60
"""
BURST = TO_ZERO.replace("maxReplicas: 2", "maxReplicas: 4\n    targetInFlight: 4")


@pytest.fixture
def stack(cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    up = UpStack(
        processes, {**cli_env, "CONVEYOR_REPLICA_ORPHAN_TIMEOUT_S": "60"}, Path(cli_env["CONVEYOR_HOME"])
    )
    up.cli("models", "register", "clf", str(build_logreg(tmp_path / "clf.onnx")))
    try:
        yield up
    finally:
        up.stop()


def desired(stack: UpStack) -> int:
    (row,) = [d for d in stack.api("/deployments")["deployments"] if d["name"] == "clf"]
    return int(row["replicas"]["desired"])


def scale_events(stack: UpStack) -> list[tuple[float, str, str]]:
    events = stack.api("/deployments/clf/events?limit=100")["events"]
    return [
        (datetime.fromisoformat(e["time"]).timestamp(), e["kind"], e["message"])
        for e in events
        if e["kind"] in ("ScaledUp", "ScaledDown")
    ]


def test_a_load_step_scales_out_within_the_window_and_back_in_after(stack: UpStack, tmp_path: Path) -> None:
    spec = tmp_path / "autoscaled.yaml"
    spec.write_text(AUTOSCALED)
    stack.start("-f", str(spec))
    stack.wait(lambda: stack.serving("clf", "1", 1), what="the first replica")
    url = f"{stack.gateway_url}/v2/models/clf/infer"

    trickle = Load(url, BODY, workers=1, rate_per_worker=20, headers=stack.headers)
    time.sleep(WINDOW_S + UP_S + 1)
    assert desired(stack) == 1, "one client must not scale out"
    assert trickle.stop().failed == 0

    step = Load(url, BODY, workers=32, rate_per_worker=0, headers=stack.headers)
    started = time.monotonic()
    try:
        stack.wait(lambda: desired(stack) > 1, timeout=WINDOW_S + UP_S + 10, what="a scale-out")
        scaled_after = time.monotonic() - started
        stack.wait(lambda: stack.api("/deployments")["deployments"][0]["replicas"]["ready"] > 1, what="ready")
    finally:
        result = step.stop()
    assert result.failed == 0, result.output
    assert scaled_after <= WINDOW_S + UP_S + 3, f"scaled out only after {scaled_after:.1f}s"

    stack.wait(lambda: desired(stack) == 1, timeout=DOWN_S + WINDOW_S + 15, what="back to 1 replica")
    stack.wait(lambda: len(stack.replicas("clf")) == 1, what="extra replicas stopped")
    events = scale_events(stack)
    assert events[0][1] == "ScaledUp" and events[-1][1] == "ScaledDown", events
    for (t1, k1, _), (t2, k2, _) in itertools.pairwise(events):
        window = UP_S if k2 == "ScaledUp" else DOWN_S
        if k1 == k2:  # one decision per stabilization window
            assert t2 - t1 >= window - 0.1, events


def test_scale_to_zero_holds_a_request_until_a_replica_is_ready(stack: UpStack, tmp_path: Path) -> None:
    spec = tmp_path / "zero.yaml"
    spec.write_text(TO_ZERO)
    stack.start("-f", str(spec))
    stack.wait(lambda: desired(stack) == 0 and not stack.replicas("clf"), timeout=30, what="scaled to zero")

    started = time.monotonic()
    url = f"{stack.gateway_url}/v2/models/clf/infer"
    response = httpx.post(url, content=BODY, timeout=90, headers=stack.headers)
    cold = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "1"
    assert cold < 30, f"cold start took {cold:.1f}s"
    assert [k for _, k, _ in scale_events(stack)][-2:] == ["ScaledDown", "ScaledUp"]


def test_a_burst_at_zero_replicas_scales_by_its_size_and_every_request_is_answered(
    stack: UpStack, tmp_path: Path
) -> None:
    """16 requests at once at 0 replicas, targetInFlight 4, maxReplicas 4: the gateway reports the first one
    held at once (one replica starts), the rest while it starts; the deployment goes to ceil(16 / 4) = 4."""
    spec = tmp_path / "burst.yaml"
    spec.write_text(BURST)
    stack.start("-f", str(spec))
    stack.wait(lambda: desired(stack) == 0 and not stack.replicas("clf"), timeout=30, what="scaled to zero")

    url, headers = f"{stack.gateway_url}/v2/models/clf/infer", stack.headers
    with ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda _: httpx.post(url, content=BODY, timeout=90, headers=headers), range(16))
        )
    assert [r.status_code for r in answers] == [200] * 16, [r.text for r in answers if r.status_code != 200]
    ups = [m for _, k, m in scale_events(stack) if k == "ScaledUp"]
    assert any(" -> 4: " in m for m in ups), ups  # the whole burst sized it, not its first request
