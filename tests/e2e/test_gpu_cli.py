"""GPU requests on a machine without a GPU, through the CLI (docs/gpu.md): `conveyor serve --device cuda` is
one line and a non-zero exit, `--device auto` serves on the CPU and says so in V2 metadata; under `conveyor
up`, apply of a `resources.gpu: 1` deployment is refused with the reason, and with `fallback: cpu` it is
applied with a warning, serves, and `describe` shows its replica on CPUExecutionProvider. The same on a GPU
machine is tests/integration/test_gpu.py."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from conveyor.errors import InvalidInput
from conveyor.runtime.providers import Device, choose, probe_capabilities
from tests.e2e.conftest import CliRunner
from tests.e2e.test_up_under_load import BODY
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok
from tests.fixtures.stack import UpStack


def _gpu_here() -> bool:
    try:
        choose(Device("cuda"), probe_capabilities())
    except InvalidInput:
        return False
    return True


pytestmark = [
    pytest.mark.skipif(_gpu_here(), reason="this machine has a CUDA GPU: tests/integration/test_gpu.py"),
    pytest.mark.timeout(240),
]
SPEC = """apiVersion: conveyor.dev/v1
kind: Deployment
metadata: {{name: clf}}
spec: {{model: "clf:1", replicas: 1, resources: {{{resources}}}}}
"""


def test_serve_on_a_gpu_that_is_missing_is_one_line(cli: CliRunner, tmp_path: Path) -> None:
    model = build_logreg(tmp_path / "clf.onnx")
    out = cli("serve", str(model), "--device", "cuda", "--port", "0", check=False)
    assert out.returncode != 0 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: --device cuda cannot run here: this machine's onnxruntime "), lines
    assert lines[0].endswith("has no CUDAExecutionProvider (it has " + lines[0].split("(it has ")[1])
    bad = cli("serve", str(model), "--device", "gpu", "--port", "0", check=False)
    assert bad.returncode != 0 and bad.stderr.startswith("error: device 'gpu' is not one of cpu, cuda[:N]")


def test_serve_auto_runs_on_the_cpu_and_says_so(
    tmp_path: Path, cli_env: dict[str, str], processes: ProcessGroup
) -> None:
    model = build_logreg(tmp_path / "clf.onnx")
    port = free_port()
    argv = [conveyor_exe(), "serve", str(model), "--device", "auto", "--replicas", "2", "--port", str(port)]
    proc = processes.start(argv, env=cli_env)
    base = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base}/v2/health/ready", proc, timeout=90)
    meta = httpx.get(f"{base}/v2/models/clf", timeout=10).json()
    assert meta["parameters"] == {"execution_provider": "CPUExecutionProvider", "device": "cpu"}
    headers = {"content-type": "application/json"}
    answer = httpx.post(f"{base}/v2/models/clf/infer", content=BODY, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text


def test_apply_refuses_a_gpu_deployment_and_falls_back_to_the_cpu_when_allowed(
    cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup
) -> None:
    stack = UpStack(processes, cli_env, Path(cli_env["CONVEYOR_HOME"]))
    stack.cli("models", "register", "clf", str(build_logreg(tmp_path / "clf.onnx")))
    try:
        stack.start()
        refused = tmp_path / "gpu.yaml"
        refused.write_text(SPEC.format(resources="gpu: 1"))
        out = stack.cli("apply", "-f", str(refused), check=False)
        assert out.returncode != 0, out.stdout
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith(
            "error: deployment 'clf' asks for resources.gpu: 1 cannot run here: this machine's onnxruntime "
        ), lines[0]
        assert (
            "has no CUDAExecutionProvider" in lines[0] and "install the gpu extra (docs/gpu.md)" in lines[0]
        )
        assert json.loads(stack.cli("get", "deployments", "--json").stdout)["deployments"] == []

        fallback = tmp_path / "fallback.yaml"
        fallback.write_text(SPEC.format(resources="gpu: 1, fallback: cpu"))
        out = stack.cli("apply", "-f", str(fallback), "--wait", "--timeout", "90")
        text = " ".join(out.stdout.split())
        assert "deployment/clf created" in text, out.stdout
        assert "warning: deployment 'clf' asks for resources.gpu: 1: this machine's onnxruntime" in text
        assert "running on the CPU instead (fallback: cpu)" in text, out.stdout
        assert stack.infer_version("clf", BODY) == "1"
        [replica] = stack.replicas("clf")
        assert replica["provider"] == "CPUExecutionProvider"
        described = stack.cli("describe", "deployment", "clf").stdout
        assert "CPUExecutionProvider" in described, described
        meta = httpx.get(f"{stack.gateway_url}/v2/models/clf", headers=stack.headers, timeout=10).json()
        assert meta["parameters"]["execution_provider"] == "CPUExecutionProvider"
    finally:
        stack.stop()
