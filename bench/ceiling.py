"""The in-process ONNX Runtime ceiling: inferences per second from one session, no server, no JSON."""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
from models import BenchModel


def inferences_per_s(model: BenchModel, batch: int, duration_s: float = 2.0) -> float:
    """Batch-``batch`` calls on a single session with default threading, for about ``duration_s``."""
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    x = np.repeat(model.load_input, batch, axis=0)
    feeds = {model.input_name: x}
    for _ in range(5):  # warm up
        session.run(None, feeds)
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < duration_s:
        session.run(None, feeds)
        calls += 1
    return calls * batch / elapsed
