"""What a deployment's resources.gpu asks of this machine (control/devices.py) and where its replicas go
(Desired.device_env): refused without the GPU, the CPU with a warning with ``fallback: cpu``, other targets
left to their machines, a new replica pinned to the GPU the fewest running replicas hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.control import desired as desired_module
from conveyor.control import devices
from conveyor.control.desired import Desired
from conveyor.errors import InvalidInput
from conveyor.runtime.providers import CPU, CUDA, Capabilities, Choice, Device
from conveyor.spec import Deployment, load_documents

CPU_ONLY = Capabilities((CPU,), 0, "1.32.0")
TWO_GPUS = Capabilities((CUDA, CPU), 2, "1.31.1")


def deployment(spec: str) -> Deployment:
    head = "apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {name: d}\n"
    [d] = load_documents(head + f"spec: {{model: 'm:1', {spec}}}\n")
    assert isinstance(d, Deployment)
    return d


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Capabilities:
    """This machine's capabilities, as the probe would report them (CPU-only unless a test says)."""
    state = {"capabilities": CPU_ONLY}
    monkeypatch.setattr(devices, "probe_capabilities", lambda: state["capabilities"])
    monkeypatch.setattr(desired_module, "probe_capabilities", lambda: state["capabilities"])
    return CPU_ONLY


def test_a_cpu_deployment_asks_nothing(machine: Capabilities) -> None:
    assert devices.device_choice("d", deployment("replicas: 1").spec) is None
    assert devices.check_devices([deployment("replicas: 1")]) == {}


def test_a_gpu_this_machine_lacks_is_refused_naming_the_deployment(machine: Capabilities) -> None:
    with pytest.raises(InvalidInput) as e:
        devices.check_devices([deployment("resources: {gpu: 1}")])
    assert e.value.message.startswith("deployment 'd' asks for resources.gpu: 1 cannot run here: ")
    assert "has no CUDAExecutionProvider" in e.value.message


def test_fallback_is_the_cpu_and_a_warning(machine: Capabilities, caplog: pytest.LogCaptureFixture) -> None:
    warnings = devices.check_devices([deployment("resources: {gpu: 1, fallback: cpu}")])
    assert warnings["d"].endswith("running on the CPU instead (fallback: cpu)")
    assert warnings["d"] in caplog.text


def test_other_targets_are_left_to_their_machines(machine: Capabilities) -> None:
    assert devices.device_choice("d", deployment("resources: {gpu: 1}, target: kubernetes").spec) is None


def _desired(device: Choice | None) -> Desired:
    return Desired("d", 1, "m", "1", Path("m.onnx"), "0" * 64, "t", {}, 1, None, None, device=device)


def test_new_replicas_go_to_the_gpu_fewest_replicas_hold(
    machine: Capabilities, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(desired_module, "probe_capabilities", lambda: TWO_GPUS)
    gpu = _desired(Choice(Device("cuda")))
    assert gpu.device_env([])["CUDA_VISIBLE_DEVICES"] == "0"
    assert gpu.device_env(["0"])["CUDA_VISIBLE_DEVICES"] == "1"
    assert gpu.device_env(["0", "1", "1"])["CUDA_VISIBLE_DEVICES"] == "0"
    assert gpu.device_env([], visible="3,5")["CUDA_VISIBLE_DEVICES"] == "3"  # the control plane's own view
    env = gpu.device_env(["0"])
    assert gpu.replica_details(env) == {"provider": CUDA, "gpu": "1"}
    assert _desired(None).device_env(["0"]) == {}
    assert _desired(None).replica_details({}) == {"provider": CPU}
    fallen_back = _desired(Choice(Device("cpu"), warning="no GPU"))
    assert fallen_back.device_env([]) == {} and fallen_back.replica_details({}) == {"provider": CPU}
