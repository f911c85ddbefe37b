"""Which ONNX Runtime execution provider runs a model, decided in one place (docs/gpu.md).

``conveyor serve --device``, a Deployment's ``resources.gpu`` and the replica process all ask ``choose``: CPU,
CUDA or TensorRT from what this machine's ONNX Runtime offers (``Capabilities``), a refusal naming what is
missing, or CPU with a warning when the caller allows that fallback. Importing this module loads no ONNX
Runtime: the control plane and gateways learn the machine's capabilities from ``probe_capabilities``, a
short-lived ``python -m conveyor.runtime.providers``, so they never load it themselves.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from conveyor.errors import InvalidInput

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
DEVICE_HELP = "cpu, cuda[:N], tensorrt[:N] or auto (CUDA when this machine has it, else CPU)"
Kind = Literal["cpu", "cuda", "tensorrt", "auto"]
_KINDS: dict[str, Kind] = {"cpu": "cpu", "cuda": "cuda", "tensorrt": "tensorrt", "auto": "auto"}
_PROVIDER: dict[str, str] = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
# What a replica on a GPU batches unless told otherwise (docs/gpu.md): a GPU's cost per call is nearly flat
# up to dozens of rows, so bigger batches and a longer wait to fill them pay where on a CPU they only add
# latency (docs/batching.md).
GPU_BATCHING: dict[str, int] = {"max_batch_size": 64, "max_queue_delay_us": 2000}
PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Device:
    """A device as asked for: ``cuda:1`` is Device("cuda", 1); ``cuda`` leaves the GPU to the caller."""

    kind: Kind
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def is_gpu(self) -> bool:
        return self.kind in ("cuda", "tensorrt")

    @property
    def provider(self) -> str:
        """The execution provider that runs the model first (auto: not decided yet, so CPU's name)."""
        return _PROVIDER.get(self.kind, CPU)


def parse_device(text: str) -> Device:
    """``cpu``, ``auto``, ``cuda``, ``cuda:N``, ``tensorrt``, ``tensorrt:N``; else InvalidInput."""
    name, sep, index = text.strip().lower().partition(":")
    kind = _KINDS.get(name)
    if kind is None or (sep and kind in ("cpu", "auto")):
        raise InvalidInput(f"device {text!r} is not one of {DEVICE_HELP}")
    if not sep:
        return Device(kind)
    if not index.isdigit():
        raise InvalidInput(f"device {text!r}: the GPU index after ':' must be a number (cuda:0)")
    return Device(kind, int(index))


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What this machine's ONNX Runtime can run on."""

    providers: tuple[str, ...]
    """``onnxruntime.get_available_providers()``: what the installed build has, not whether a GPU is there."""
    cuda_devices: int
    """CUDA devices the driver shows this process (CUDA_VISIBLE_DEVICES applies); 0 without a driver."""
    version: str = "unknown"
    """The onnxruntime version, named in refusals."""
    problem: str | None = None
    """Why they could not be learnt (the probe failed), when so: every GPU request is then refused with it."""

    def to_dict(self) -> dict[str, Any]:
        return {"providers": list(self.providers), "cuda_devices": self.cuda_devices, "version": self.version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Capabilities:
        return cls(tuple(data["providers"]), int(data["cuda_devices"]), str(data.get("version", "unknown")))

    def missing(self, device: Device) -> str | None:
        """Why ``device`` cannot run here, or None when it can."""
        if not device.is_gpu:
            return None
        if self.problem is not None:
            return f"this machine's ONNX Runtime could not be asked what it runs on: {self.problem}"
        provider = device.provider
        if provider not in self.providers:
            hint = (
                "install the gpu extra (docs/gpu.md)"
                if device.kind == "cuda"
                else "install TensorRT beside the gpu extra (docs/gpu.md)"
            )
            return (
                f"this machine's onnxruntime {self.version} has no {provider} "
                f"(it has {', '.join(self.providers)}): {hint}"
            )
        if self.cuda_devices == 0:
            return (
                f"onnxruntime {self.version} has {provider} but no CUDA device is visible "
                "(no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them)"
            )
        if device.index is not None and device.index >= self.cuda_devices:
            last = self.cuda_devices - 1
            return f"there is no GPU {device.index}: {self.cuda_devices} CUDA device(s) visible (0..{last})"
        return None


@dataclass(frozen=True, slots=True)
class Choice:
    """What runs a model: ``device`` (cpu, or a GPU kind with the index asked, if any) and, after a fallback,
    the warning that says why it is not the device asked for."""

    device: Device
    warning: str | None = field(default=None, compare=False)

    @property
    def provider(self) -> str:
        return self.device.provider

    @property
    def is_gpu(self) -> bool:
        return self.device.is_gpu


def choose(
    asked: Device, capabilities: Capabilities, *, fallback_cpu: bool = False, what: str = ""
) -> Choice:
    """The device that runs a model asked to run on ``asked``: InvalidInput naming what is missing (``what``
    says who asked: "--device cuda", "resources.gpu: 1"), or CPU with a warning when ``fallback_cpu``.
    ``auto`` is CUDA when this machine has it, else CPU (no warning: that is what auto means)."""
    if asked.kind == "cpu":
        return Choice(Device("cpu"))
    if asked.kind == "auto":
        cuda = Device("cuda", asked.index)
        return Choice(cuda if capabilities.missing(cuda) is None else Device("cpu"))
    problem = capabilities.missing(asked)
    if problem is None:
        return Choice(asked)
    who = what or f"device {asked}"
    if fallback_cpu:
        return Choice(Device("cpu"), warning=f"{who}: {problem}; running on the CPU instead (fallback: cpu)")
    raise InvalidInput(f"{who} cannot run here: {problem}")


def session_providers(device: Device) -> list[str | tuple[str, dict[str, Any]]]:
    """The ``providers=`` of an InferenceSession on ``device`` (a resolved one: cpu, cuda[:N], tensorrt[:N]):
    the GPU provider first with its device id, CUDA behind TensorRT for the nodes TensorRT does not take,
    the CPU last for those no GPU provider takes."""
    index = device.index or 0
    if device.kind == "cuda":
        return [(CUDA, {"device_id": index}), CPU]
    if device.kind == "tensorrt":
        return [(TENSORRT, {"device_id": index}), (CUDA, {"device_id": index}), CPU]
    return [CPU]


def replica_env(choice: Choice, capabilities: Capabilities, slot: int, visible: str | None) -> dict[str, str]:
    """The environment of replica number ``slot`` pinned to one GPU: ``CUDA_VISIBLE_DEVICES`` names the one
    device it sees (the GPU asked for, else the slots spread over the GPUs in turn) and ``CONVEYOR_DEVICE``
    says to run on it (GPU 0 of what it sees). ``visible``: this process's own CUDA_VISIBLE_DEVICES, whose
    entries the indexes count in. Nothing for a replica on the CPU."""
    if not choice.is_gpu or capabilities.cuda_devices < 1:
        return {}
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    ids = ids[: capabilities.cuda_devices] or [str(i) for i in range(capabilities.cuda_devices)]
    index = choice.device.index if choice.device.index is not None else slot % len(ids)
    return {"CUDA_VISIBLE_DEVICES": ids[index], "CONVEYOR_DEVICE": f"{choice.device.kind}:0"}


def gpu_batching(explicit: Collection[str]) -> dict[str, int]:
    """The GPU batching defaults (``GPU_BATCHING``) of the fields not in ``explicit`` (those the user set)."""
    return {k: v for k, v in GPU_BATCHING.items() if k not in explicit}


# -- learning what this machine has -------------------------------------------------------------------------


def local_capabilities() -> Capabilities:
    """This process's ONNX Runtime (imported here) and CUDA devices (asked of the driver, not a session)."""
    import onnxruntime as ort

    providers = tuple(ort.get_available_providers())
    gpus = cuda_device_count() if CUDA in providers or TENSORRT in providers else 0
    return Capabilities(providers, gpus, ort.__version__)


def cuda_device_count() -> int:
    """CUDA devices the driver API (libcuda, part of the NVIDIA driver) shows this process; 0 without it.
    Asked of the driver because a CPU-only machine with onnxruntime-gpu installed still lists CUDA among
    ONNX Runtime's available providers."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return max(0, count.value)
    return 0


_probed: Capabilities | None = None
_probe_lock = threading.Lock()


def probe_capabilities(timeout_s: float = PROBE_TIMEOUT_S) -> Capabilities:
    """This machine's capabilities learnt once per process from ``python -m conveyor.runtime.providers`` (so
    the caller loads neither ONNX Runtime nor CUDA); a probe that fails says why in ``problem``."""
    global _probed
    with _probe_lock:
        if _probed is None:
            _probed = _probe(timeout_s)
        return _probed


def _probe(timeout_s: float) -> Capabilities:
    command = [sys.executable, "-m", "conveyor.runtime.providers"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Capabilities((CPU,), 0, problem=f"{' '.join(command)}: {e}")
    lines = done.stdout.strip().splitlines()
    try:
        return Capabilities.from_dict(json.loads(lines[-1]))
    except (IndexError, ValueError, KeyError, TypeError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Capabilities((CPU,), 0, problem=f"{' '.join(command)} exited {done.returncode}: {tail}")


def main() -> None:
    """Print this machine's capabilities as one JSON line (what ``probe_capabilities`` reads)."""
    print(json.dumps(local_capabilities().to_dict()), flush=True)


if __name__ == "__main__":
    main()
