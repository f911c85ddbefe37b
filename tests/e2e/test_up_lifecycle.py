"""`conveyor up` starts and stops cleanly: Ctrl-C leaves no process behind, bad input fails before or after
starting with one line and the right exit code, one control plane per CONVEYOR_HOME.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.models import build_logreg
from tests.fixtures.module_stack import own_stack
from tests.fixtures.processes import ProcessGroup, children, free_port, output_of
from tests.fixtures.stack import UpStack, kill_recorded_replicas

pytestmark = pytest.mark.timeout(180)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: {model}
  replicas: 2
"""


@pytest.fixture
def bare(cli_env: dict[str, str], processes: ProcessGroup) -> Iterator[UpStack]:
    """A stack not started, its registry empty: for the tests that fail before a model is read."""
    up = UpStack(processes, cli_env, Path(cli_env["CONVEYOR_HOME"]))
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture
def stack(bare: UpStack, tmp_path: Path) -> UpStack:
    """A stack not started with clf:1 registered."""
    bare.cli("models", "register", "clf", str(build_logreg(tmp_path / "clf.onnx")))
    return bare


@dataclass(frozen=True)
class Serving:
    """One stack for the tests that only read it: clf:1 (two replicas) and examples/tiny.yaml applied by
    `up -f`, and V2 gRPC on the gateway."""

    stack: UpStack
    grpc_port: int
    clf_onnx: Path


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    tmp = tmp_path_factory.mktemp("lifecycle")
    with own_stack(tmp) as up:
        clf = build_logreg(tmp / "clf.onnx")
        up.cli("models", "register", "clf", str(clf))
        up.cli("models", "register", "tiny", str(build_logreg(tmp / "tiny.onnx", seed=3)))
        spec = tmp / "serving.yaml"
        spec.write_text(SPEC.format(model="clf:1") + "---\n" + (EXAMPLES / "tiny.yaml").read_text())
        grpc_port = free_port()
        up.start("-f", str(spec), "--grpc-port", str(grpc_port))
        yield Serving(up, grpc_port, clf)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_the_gateway_the_control_plane_and_every_replica(stack: UpStack, tmp_path: Path) -> None:
    spec = tmp_path / "clf.yaml"
    spec.write_text(SPEC.format(model="clf:1"))
    stack.start("-f", str(spec))
    replicas = stack.replicas("clf")
    assert len(replicas) == 2
    out = output_of(stack.proc) if stack.proc else ""
    assert "deployment/clf configured (revision 1, clf:1)" in out
    assert f"{stack.gateway_url}/v2/models/clf/infer" in out

    assert stack.proc is not None
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=60) == 0, output_of(stack.proc)
    assert "stopped" in output_of(stack.proc)
    assert not listening(stack.port) and not listening(stack.api_port)
    assert kill_recorded_replicas(stack.home) == [], "replicas left running"
    for r in replicas:
        assert not Path(r["address"].removeprefix("unix:")).exists()


def test_a_bad_spec_file_fails_before_anything_starts(bare: UpStack, tmp_path: Path) -> None:
    stack = bare
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.format(model="clf:1").replace("replicas: 2", "replicas: -2"))
    proc = stack.cli(
        "up", "-f", str(spec), "--port", str(stack.port), "--api-port", str(stack.api_port), check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "bad.yaml:7: spec.replicas" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_an_unknown_model_stops_what_was_started_and_says_why(stack: UpStack, tmp_path: Path) -> None:
    spec = tmp_path / "missing.yaml"
    spec.write_text(SPEC.format(model="nosuch:1"))
    proc = stack.cli(
        "up", "-f", str(spec), "--port", str(stack.port), "--api-port", str(stack.api_port), check=False
    )
    assert proc.returncode == 3, proc.stderr
    assert "nosuch" in proc.stderr and "Traceback" not in proc.stderr
    assert not listening(stack.port) and not listening(stack.api_port)


def test_scale_then_delete_on_the_running_stack(stack: UpStack, tmp_path: Path) -> None:
    spec = tmp_path / "clf.yaml"
    spec.write_text(SPEC.format(model="clf:1"))
    stack.start("-f", str(spec))
    assert "unchanged" in stack.cli("apply", "-f", str(spec)).stdout
    stack.cli("scale", "clf", "--replicas", "3")
    stack.wait(lambda: stack.serving("clf", "1", 3), what="3 replicas")
    stack.cli("scale", "clf", "--replicas", "1")
    stack.wait(lambda: stack.serving("clf", "1", 1), what="scaled in to 1")
    out = stack.cli("endpoints").stdout
    assert f"{stack.gateway_url}/v2/models/clf" in out
    stack.cli("delete", "deployment", "clf")
    stack.wait(lambda: not stack.replicas("clf"), what="replicas stopped")
    stack.wait(
        lambda: (
            httpx.post(
                f"{stack.gateway_url}/v2/models/clf/infer", json={"inputs": []}, headers=stack.headers
            ).status_code
            == 404
        ),
        what="the route removed",
    )


def test_a_port_in_use_is_named_before_anything_starts(bare: UpStack) -> None:
    stack = bare
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = stack.cli("up", "--port", str(port), "--api-port", str(stack.api_port), check=False)
    assert proc.returncode == 7
    assert f"cannot listen on 127.0.0.1:{port} (--port)" in proc.stderr
    assert not listening(stack.api_port)


def _child_pid(parent: int, marker: str) -> int:
    found = [pid for pid, cmd in children(parent).items() if marker in cmd]
    assert found, f"no child of {parent} runs {marker!r}"
    return found[0]


def test_a_killed_gateway_is_restarted_and_serves_again(stack: UpStack, tmp_path: Path) -> None:
    spec = tmp_path / "clf.yaml"
    spec.write_text(SPEC.format(model="clf:1"))
    stack.start("-f", str(spec))
    assert stack.proc is not None
    gateway = _child_pid(stack.proc.pid, " gateway ")
    os.kill(gateway, signal.SIGKILL)
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}

    def answers() -> bool:
        try:
            url = f"{stack.gateway_url}/v2/models/clf/infer"
            r = httpx.post(url, json=body, timeout=5, headers=stack.headers)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    stack.wait(answers, timeout=30, what="the restarted gateway answering")
    assert _child_pid(stack.proc.pid, " gateway ") != gateway
    assert "the gateway exited" in output_of(stack.proc)


# -- on the one stack of the module (read only) ----------------------------------------------------------


def test_one_control_plane_per_home(serving: Serving) -> None:
    stack = serving.stack
    proc = stack.cli("server", "--api-port", "0", check=False)
    assert proc.returncode == 4
    assert "another control plane" in proc.stderr
    assert httpx.get(f"{stack.api_url}/api/v1/health").status_code == 200


def test_the_smallest_spec_examples_tiny_yaml_serves_with_model_version(serving: Serving) -> None:
    stack = serving.stack
    assert stack.serving("tiny", "1", 2)
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    url = f"{stack.gateway_url}/v2/models/tiny/infer"
    answer = httpx.post(url, json=body, timeout=10, headers=stack.headers).json()
    assert answer["model_name"] == "tiny" and answer["model_version"] == "1"


def test_tritonclient_grpc_and_http_through_the_up_gateway(serving: Serving) -> None:
    """tritonclient's gRPC client, and its HTTP client with binary tensors and with JSON both ways, get
    ONNX Runtime's answers through `conveyor up` (two replica processes behind the gateway)."""
    import numpy as np
    import onnxruntime as ort
    import tritonclient.grpc as tg
    import tritonclient.http as th

    stack, grpc_port = serving.stack, serving.grpc_port
    x = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]], dtype=np.float32)
    session = ort.InferenceSession(str(serving.clf_onnx), providers=["CPUExecutionProvider"])
    want_label, want_proba = session.run(["label", "probabilities"], {"input": x})
    cases = [(tg, f"127.0.0.1:{grpc_port}", True), (th, f"127.0.0.1:{stack.port}", True)]
    cases.append((th, f"127.0.0.1:{stack.port}", False))
    for module, address, binary in cases:
        client = module.InferenceServerClient(address)
        try:
            inp = module.InferInput("input", list(x.shape), "FP32")
            if module is th:
                inp.set_data_from_numpy(x, binary_data=binary)
                outputs = [th.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
            else:
                inp.set_data_from_numpy(x)
                outputs = [tg.InferRequestedOutput(n) for n in ("label", "probabilities")]
            result = client.infer("clf", [inp], outputs=outputs, headers=stack.headers)
            case = f"{module.__name__} binary={binary}"
            np.testing.assert_array_equal(result.as_numpy("label"), want_label, err_msg=case)
            np.testing.assert_allclose(result.as_numpy("probabilities"), want_proba, rtol=1e-5, err_msg=case)
            response = result.get_response()
            version = response["model_version"] if module is th else response.model_version
            assert version == "1"
            assert client.is_model_ready("clf", headers=stack.headers)
        finally:
            client.close()
