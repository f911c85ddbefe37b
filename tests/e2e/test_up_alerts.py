"""Acceptance (issue 14): under `conveyor up`, a version whose every inference fails fires the error-rate
alert within its `for` window, a local webhook receiver gets it (Alertmanager's format), and once a fixed
version is applied it resolves (the receiver gets that too); `conveyor alerts` shows both states, and the same
rule exported for Prometheus passes `promtool check rules`."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.fixtures.models import LOGREG_BODY, OPSET, build_logreg
from tests.fixtures.processes import ProcessGroup
from tests.fixtures.stack import UpStack
from tests.fixtures.webhook import Receiver

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
FOR_S = 5
SPEC = f"""\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: flaky
spec:
  model: flaky:{{v}}
  alerts:
    - name: error-rate
      expr: error_rate(10s)
      for: {FOR_S}s
"""
DEADLINE_S = 90.0


def build_failing(path: Path) -> Path:
    """``input`` FP32 [-1,4] like build_logreg's, reshaped to rows of 7 at run time: every call fails
    inside ONNX Runtime (a server error, not a bad input)."""
    shape = numpy_helper.from_array(np.array([-1, 7], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["probabilities"])]
    graph = helper.make_graph(
        nodes,
        "failing",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 7])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def stack(
    cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup, receiver: Receiver
) -> Iterator[UpStack]:
    env = {
        **cli_env,
        "CONVEYOR_METRICS_SCRAPE_INTERVAL_S": "0.5",
        "CONVEYOR_ALERT_WEBHOOKS": json.dumps([receiver.url]),
    }
    up = UpStack(processes, env, Path(env["CONVEYOR_HOME"]))
    up.cli("models", "register", "flaky", str(build_failing(tmp_path / "failing.onnx")))
    up.cli("models", "register", "flaky", str(build_logreg(tmp_path / "fixed.onnx")))
    try:
        yield up
    finally:
        up.stop()


class Client(threading.Thread):
    """Sends the same valid request until stopped; counts the answers' status codes."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.stop = threading.Event()
        self.codes: Counter[int] = Counter()
        self.first_error: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 4 * DEADLINE_S
        try:
            with httpx.Client(timeout=30, headers=self.headers) as client:
                while not self.stop.is_set() and time.monotonic() < deadline:
                    r = client.post(self.url, content=LOGREG_BODY)
                    self.codes[r.status_code] += 1
                    if r.status_code >= 500 and self.first_error is None:
                        self.first_error = time.time()
                    time.sleep(0.02)
        except BaseException as exc:  # seen by the test
            self.error = exc


def alerts(stack: UpStack) -> list[dict[str, object]]:
    found: list[dict[str, object]] = json.loads(stack.cli("alerts", "--json").stdout)["alerts"]
    return found


def test_a_failing_version_fires_the_error_rate_alert_and_a_fixed_one_resolves_it(
    stack: UpStack, tmp_path: Path, receiver: Receiver
) -> None:
    for v in (1, 2):
        (tmp_path / f"v{v}.yaml").write_text(SPEC.format(v=v))
    stack.start("-f", str(tmp_path / "v1.yaml"))
    client = Client(f"{stack.gateway_url}/v2/models/flaky/infer", stack.headers)
    client.start()
    try:
        firing = receiver.wait_for("firing", timeout=DEADLINE_S)
        arrived = time.time()
        assert client.first_error is not None and set(client.codes) <= {500, 502, 503}, client.codes
        # within its for window (plus the 10s rate window, scrapes and evaluation), and not before it
        assert arrived - client.first_error < FOR_S + 10 + 10
        (alert,) = firing["alerts"]
        assert firing["version"] == "4" and alert["status"] == "firing"
        assert alert["labels"] == {
            "alertname": "error-rate",
            "deployment": "flaky",
            "version": "1",
            "severity": "critical",
        }
        assert alert["annotations"]["summary"] == "1 of the requests of version 1 failed"
        assert alert["endsAt"] == "0001-01-01T00:00:00Z" and alert["generatorURL"].startswith("http")
        shown = stack.cli("alerts").stdout
        assert "firing" in shown and "error-rate" in shown and "flaky v1" in shown, shown
        (stored,) = [a for a in alerts(stack) if a["rule"] == "error-rate"]
        assert stored["state"] == "firing"
        assert float(stored["firedAt"]) - float(stored["activeSince"]) >= FOR_S  # type: ignore[arg-type]

        stack.cli("apply", "-f", str(tmp_path / "v2.yaml"), "--wait", "--timeout", "90")
        resolved = receiver.wait_for("resolved", timeout=DEADLINE_S)
    finally:
        client.stop.set()
        client.join(60)
    assert client.error is None, client.error
    assert client.codes[200] > 0  # the fixed version answered
    (alert,) = resolved["alerts"]
    assert alert["labels"]["version"] == "1" and alert["endsAt"] != "0001-01-01T00:00:00Z"
    shown = stack.cli("alerts").stdout
    assert "resolved" in shown and "error-rate" in shown, shown
    assert [a["state"] for a in alerts(stack) if a["rule"] == "error-rate"] == ["resolved"]


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)"
)
def test_the_deployments_rules_exported_for_prometheus_pass_promtool(stack: UpStack, tmp_path: Path) -> None:
    (tmp_path / "v1.yaml").write_text(SPEC.format(v=2))
    stack.start("-f", str(tmp_path / "v1.yaml"))
    out = tmp_path / "rules.yaml"
    stack.cli("export", "prometheus", "flaky", "-o", str(out))
    text = out.read_text()
    assert "alert: error-rate" in text and "[10s]" in text and "for: 5s" in text
    done = subprocess.run(
        ["promtool", "check", "rules", str(out)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    dashboard = json.loads(stack.cli("export", "grafana", "flaky").stdout)
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS" and len(dashboard["panels"]) == 6
