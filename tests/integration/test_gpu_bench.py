"""`make bench-gpu` runs where there is no GPU (bench/gpu.py): the CPU rows, raw ONNX Runtime at batch 1
and 32 and Conveyor at c=1 and c=32 with binary tensors, and a report that names the machine and says why
the GPU rows are missing. The small CNN only, for half a second a row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.errors import InvalidInput
from conveyor.runtime.providers import Device, choose, local_capabilities

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.timeout(240)
def test_the_gpu_bench_gives_the_cpu_rows_and_says_why_gpu_rows_are_missing(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    argv = [sys.executable, "gpu.py", "--models", "cnn", "--duration", "0.5", "--warmup", "0.3"]
    done = subprocess.run(
        [*argv, "--devices", "cpu", "--out", str(out)], cwd=BENCH, capture_output=True, text=True, timeout=200
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = out.read_text()
    assert "Machine: " in report and "GPU: " in report
    data = json.loads(out.with_suffix(".json").read_text())
    got = [(r["model"], r["device"], r["provider"], r["how"]) for r in data["rows"]]
    assert got == [
        ("cnn", "cpu", "CPUExecutionProvider", how)
        for how in (
            "raw ONNX Runtime, batch 1",
            "raw ONNX Runtime, batch 32",
            "Conveyor, c=1, binary",
            "Conveyor, c=32, binary",
        )
    ]
    assert all(r["inferences_s"] > 0 and r["errors"] == 0 for r in data["rows"]), data["rows"]
    assert "- cnn on cpu: Conveyor c=32 gives " in report
    try:
        choose(Device("cuda"), local_capabilities())
    except InvalidInput as e:
        assert data["gpu_missing"] == f"the GPU rows cannot run here: {e.message.split(': ', 1)[1]}"
        assert "**GPU rows missing:** the GPU rows cannot run here: " in report
