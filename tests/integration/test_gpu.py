"""On a CUDA GPU (marker ``gpu``; skipped with the reason without one): a model runs on the CUDA provider
through an IOBinding and answers as on the CPU, an fp16 version loads there, and ``conveyor serve --device
cuda --replicas 2`` pins each replica process to one GPU (CUDA_VISIBLE_DEVICES) and says CUDA in metadata.
The same behaviour without a GPU (refusal, fallback, auto) is tested on every machine: tests/unit/runtime/
test_providers.py and tests/e2e/test_gpu_cli.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from conveyor.errors import InvalidInput
from conveyor.runtime import OnnxModel
from conveyor.runtime.providers import CUDA, Device, choose, local_capabilities
from tests.fixtures.processes import ProcessGroup, children, conveyor_exe, free_port, wait_http_ok
from tests.unit.optimize.test_fp16_devices import fp16_answers_like_its_parent, small_cnn


def _no_gpu() -> str | None:
    try:
        choose(Device("cuda"), local_capabilities())
    except InvalidInput as e:
        return e.message
    return None


NO_GPU = _no_gpu()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(NO_GPU is not None, reason=f"no CUDA GPU here: {NO_GPU}"),
    pytest.mark.timeout(300),
]


def test_a_model_on_cuda_answers_as_on_the_cpu_through_an_io_binding() -> None:
    onnx_bytes = small_cnn()
    gpu = OnnxModel(onnx_bytes, name="cnn", device="cuda")
    assert gpu.providers[0] == CUDA and gpu._bind  # inputs go to the device once, before the run
    assert gpu.metadata()["parameters"] == {"execution_provider": CUDA, "device": "cuda"}
    x = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    want = OnnxModel(onnx_bytes, name="cnn").predict({"input": x})["logits"]
    np.testing.assert_allclose(gpu.predict({"input": x})["logits"], want, atol=1e-2, rtol=1e-2)


def test_an_fp16_version_loads_and_answers_on_cuda() -> None:
    assert fp16_answers_like_its_parent("cuda").provider == CUDA


def test_serve_pins_each_replica_to_one_gpu_and_says_cuda(tmp_path: Path, processes: ProcessGroup) -> None:
    model = tmp_path / "cnn.onnx"
    model.write_bytes(small_cnn())
    port = free_port()
    env = {"CONVEYOR_HOME": str(tmp_path / "home")}
    argv = [conveyor_exe(), "serve", str(model), "--device", "cuda", "--replicas", "2", "--port", str(port)]
    proc = processes.start(argv, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base}/v2/health/ready", proc, timeout=120)
    meta = httpx.get(f"{base}/v2/models/cnn", timeout=10).json()
    assert meta["parameters"]["execution_provider"] == CUDA
    x = np.zeros((1, 3, 16, 16), np.float32)
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]
    }
    answer = httpx.post(f"{base}/v2/models/cnn/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    replicas = [pid for pid, cmd in children(proc.pid).items() if "conveyor.server" in cmd]
    assert len(replicas) == 2
    pins = sorted(_environ(pid).get("CUDA_VISIBLE_DEVICES", "") for pid in replicas)
    gpus = local_capabilities().cuda_devices
    assert pins == (["0", "1"] if gpus >= 2 else ["0", "0"])


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if b"=" in item)
