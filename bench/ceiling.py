"""The in-process ONNX Runtime ceiling: inferences per second from one session, no server, no JSON."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from models import BenchModel


@dataclass
class Ceiling:
    rate: float  # inferences/s
    cpu_us: float  # process CPU per inference (every ONNX Runtime thread), microseconds


def measure(model: BenchModel, batch: int, duration_s: float = 1.0, repeats: int = 3) -> Ceiling:
    """Batch-``batch`` calls on a single session with default threading: the best of ``repeats`` runs of about
    ``duration_s`` each. A ceiling is what the machine can do, so a run slowed by a noisy neighbour (this
    machine is a VM sharing its host) is not the figure: the best one is."""
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    x = np.repeat(model.load_input, batch, axis=0)
    feeds = {model.input_name: x}
    for _ in range(5):  # warm up
        session.run(None, feeds)
    runs = []
    for _ in range(repeats):
        calls, started, cpu_started = 0, time.perf_counter(), time.process_time()
        while (elapsed := time.perf_counter() - started) < duration_s:
            session.run(None, feeds)
            calls += 1
        cpu = time.process_time() - cpu_started
        runs.append(Ceiling(rate=calls * batch / elapsed, cpu_us=cpu / (calls * batch) * 1e6))
    return max(runs, key=lambda r: r.rate)


_RSS_PROBE = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.zeros([32, *map(int, sys.argv[3].split(","))], dtype=np.float32)
for _ in range(3):
    s.run(None, {sys.argv[2]: x})
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""


def session_rss_mb(model: BenchModel) -> float:
    """Peak RSS of a bare Python process holding one session after batch-32 runs: the replica memory
    target is measured against this (a replica may use at most this + 80 MB)."""
    import subprocess
    import sys

    shape = ",".join(str(d) for d in model.input_shape)
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(model.path), model.input_name, shape],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(out.stdout.strip()) / 1024
