"""Device selection (runtime/providers.py): what runs a model on a machine with or without a GPU, as pure
functions of the machine's capabilities, and the probe that learns this machine's in a process of its own."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from conveyor.errors import InvalidInput
from conveyor.runtime.providers import (
    CPU,
    CUDA,
    TENSORRT,
    Capabilities,
    Choice,
    Device,
    choose,
    gpu_batching,
    local_capabilities,
    parse_device,
    probe_capabilities,
    replica_env,
    session_providers,
)

CPU_ONLY = Capabilities((CPU,), 0, "1.32.0")
GPU_BUILD_NO_GPU = Capabilities((CUDA, CPU), 0, "1.31.1")  # onnxruntime-gpu on a machine without a driver
TWO_GPUS = Capabilities((TENSORRT, CUDA, CPU), 2, "1.31.1")


@pytest.mark.parametrize(
    ("text", "device"),
    [
        ("cpu", Device("cpu")),
        ("auto", Device("auto")),
        ("cuda", Device("cuda")),
        ("CUDA:1", Device("cuda", 1)),
        ("tensorrt:0", Device("tensorrt", 0)),
    ],
)
def test_devices_parse(text: str, device: Device) -> None:
    assert parse_device(text) == device
    assert str(parse_device(str(device))) == str(device)


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cpu:0", "auto:1", ""])
def test_a_device_that_is_none_is_refused_naming_the_choices(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"cpu, cuda|must be a number"):
        parse_device(text)


def test_cuda_missing_from_onnxruntime_is_refused_naming_the_extra() -> None:
    with pytest.raises(InvalidInput) as e:
        choose(Device("cuda"), CPU_ONLY, what="resources.gpu: 1")
    assert str(e.value) == (
        "resources.gpu: 1 cannot run here: this machine's onnxruntime 1.32.0 has no CUDAExecutionProvider "
        "(it has CPUExecutionProvider): install the gpu extra (docs/gpu.md)"
    )


def test_the_gpu_build_without_a_gpu_is_refused_saying_no_device_is_visible() -> None:
    with pytest.raises(InvalidInput, match="has CUDAExecutionProvider but no CUDA device is visible"):
        choose(Device("cuda"), GPU_BUILD_NO_GPU)


def test_a_gpu_index_past_the_last_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"there is no GPU 2: 2 CUDA device\(s\) visible \(0\.\.1\)"):
        choose(Device("cuda", 2), TWO_GPUS)


def test_tensorrt_needs_its_provider() -> None:
    with pytest.raises(InvalidInput, match=r"no TensorrtExecutionProvider.*install TensorRT"):
        choose(Device("tensorrt"), Capabilities((CUDA, CPU), 1))


def test_fallback_runs_on_the_cpu_with_a_warning_naming_why() -> None:
    choice = choose(Device("cuda"), CPU_ONLY, fallback_cpu=True, what="deployment 'd'")
    assert choice.device == Device("cpu") and choice.provider == CPU
    assert choice.warning is not None
    assert choice.warning.startswith("deployment 'd': this machine's onnxruntime 1.32.0 has no CUDA")
    assert choice.warning.endswith("running on the CPU instead (fallback: cpu)")


def test_a_gpu_that_is_there_is_chosen_without_a_warning() -> None:
    assert choose(Device("cuda"), TWO_GPUS) == Choice(Device("cuda"))
    assert choose(Device("tensorrt", 1), TWO_GPUS).provider == TENSORRT
    assert choose(Device("cuda"), TWO_GPUS, fallback_cpu=True).warning is None


def test_auto_is_cuda_when_there_is_a_gpu_else_the_cpu_quietly() -> None:
    assert choose(Device("auto"), TWO_GPUS).device == Device("cuda")
    for machine in (CPU_ONLY, GPU_BUILD_NO_GPU):
        choice = choose(Device("auto"), machine)
        assert choice.device == Device("cpu") and choice.warning is None


def test_a_failed_probe_refuses_gpus_with_its_reason_and_leaves_the_cpu() -> None:
    broken = Capabilities((CPU,), 0, problem="timed out")
    with pytest.raises(InvalidInput, match="could not be asked what it runs on: timed out"):
        choose(Device("cuda"), broken)
    assert choose(Device("cpu"), broken).device == Device("cpu")


def test_session_providers_put_the_gpu_first_and_the_cpu_last() -> None:
    assert session_providers(Device("cpu")) == [CPU]
    assert session_providers(Device("cuda", 1)) == [(CUDA, {"device_id": 1}), CPU]
    assert session_providers(Device("tensorrt")) == [
        (TENSORRT, {"device_id": 0}),
        (CUDA, {"device_id": 0}),
        CPU,
    ]


def test_replicas_are_pinned_to_one_gpu_each_in_turn() -> None:
    cuda = Choice(Device("cuda"))
    pins = [replica_env(cuda, TWO_GPUS, slot, None)["CUDA_VISIBLE_DEVICES"] for slot in range(4)]
    assert pins == ["0", "1", "0", "1"]
    assert replica_env(cuda, TWO_GPUS, 0, None)["CONVEYOR_DEVICE"] == "cuda:0"  # the one GPU it sees
    # The GPU asked for, for every replica; counted in this process's own CUDA_VISIBLE_DEVICES.
    assert replica_env(Choice(Device("cuda", 1)), TWO_GPUS, 0, "4,6")["CUDA_VISIBLE_DEVICES"] == "6"
    assert replica_env(cuda, TWO_GPUS, 3, "GPU-a, GPU-b")["CUDA_VISIBLE_DEVICES"] == "GPU-b"
    assert replica_env(Choice(Device("cpu")), TWO_GPUS, 0, None) == {}


def test_gpu_batching_defaults_leave_what_the_user_set() -> None:
    assert gpu_batching(set()) == {"max_batch_size": 64, "max_queue_delay_us": 2000}
    assert gpu_batching({"max_batch_size"}) == {"max_queue_delay_us": 2000}


def test_the_probe_reports_what_this_processs_onnxruntime_reports() -> None:
    probed = probe_capabilities()
    assert probed.problem is None
    assert probed.providers == tuple(ort.get_available_providers())
    assert probed == local_capabilities()
    if CUDA not in probed.providers:
        assert probed.cuda_devices == 0
