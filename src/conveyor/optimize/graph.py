"""Offline graph optimization: ONNX Runtime's own optimizer run once, its result saved as the new model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import onnxruntime as ort

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.parity import first_line

Level = Literal["basic", "extended", "all"]
LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,  # constant folding, redundant nodes: portable
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,  # fusions into ORT's contrib operators
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,  # and layout changes for this machine's CPU
}


def optimize_graph(onnx_bytes: bytes, level: str) -> bytes:
    """The graph as ONNX Runtime's optimizer at ``level`` leaves it (``optimized_model_filepath``).

    "extended" and "all" write ONNX Runtime operators that only ONNX Runtime runs, and "all" may write a
    layout for this machine's CPU: fine for Conveyor's replicas, which are ONNX Runtime on CPU."""
    if level not in LEVELS:
        raise InvalidInput(f"unknown graph optimization level {level!r}; use {', '.join(LEVELS)}")
    with tempfile.TemporaryDirectory(prefix="conveyor-graph-") as tmp:
        target = Path(tmp) / "optimized.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = LEVELS[level]
        opts.optimized_model_filepath = str(target)
        opts.log_severity_level = 3  # "all" warns that the layout fits this machine: said in the docs instead
        try:
            ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT's own exception types
            raise ConversionError(f"graph optimization ({level}) failed: {first_line(e)}") from e
        return target.read_bytes()
