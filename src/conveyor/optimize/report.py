"""What an optimization is judged by: size, latency and throughput measured in-process with ONNX Runtime,
output drift against the parent on the same rows, and accuracy/F1 or RMSE when labels are given."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from conveyor.formats.parity import max_abs_diff
from conveyor.optimize.data import Array, Inputs, row_count, take
from conveyor.runtime.onnx_model import OnnxModel

BATCHES = (1, 32)
Outputs = dict[str, Array]


def load(onnx_bytes: bytes, name: str, intra_op_threads: int = 0) -> OnnxModel:
    """A session as a replica would build it, so what is timed is what will be served."""
    return OnnxModel(onnx_bytes, name=name, intra_op_threads=intra_op_threads)


def fixed_batch(model: OnnxModel) -> int | None:
    """The batch size a model was exported with (a first dimension that is not dynamic), else None."""
    fixed = {t.shape[0] for t in model.signature.inputs if t.shape and t.shape[0] >= 0}
    return min(fixed) if fixed else None


def run(model: OnnxModel, inputs: Inputs) -> Outputs:
    """The model's answers for every row (a model of a fixed batch size answers in runs of that size; the
    caller gives a multiple of it)."""
    size = fixed_batch(model)
    rows = row_count(inputs)
    if size is None or size == rows:
        return model.predict(inputs)
    parts = [model.predict({k: v[i : i + size] for k, v in inputs.items()}) for i in range(0, rows, size)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def timing(
    model: OnnxModel,
    inputs: Inputs,
    *,
    batches: Sequence[int] = BATCHES,
    seconds: float = 0.5,
    min_runs: int = 10,
    on_batch: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """p50/p99 latency (ms) and throughput (rows/s, one caller) per batch size, each timed for about
    ``seconds`` after a warm-up (``min_runs`` at least). A model of a fixed batch size is timed at it."""
    size = fixed_batch(model)
    sizes = [size] if size is not None else list(batches)
    out: dict[str, Any] = {}
    for size in sizes:
        batch = take(inputs, size)
        for _ in range(3):
            model.predict(batch)
        times: list[float] = []
        deadline = time.perf_counter() + seconds
        while len(times) < min_runs or time.perf_counter() < deadline:
            start = time.perf_counter()
            model.predict(batch)
            times.append(time.perf_counter() - start)
        ms = np.asarray(times) * 1000.0
        out[str(size)] = {
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "throughput": float(size * len(times) / (ms.sum() / 1000.0)),
            "runs": len(times),
        }
        if on_batch is not None:
            on_batch()
    return out


def drift(parent: Outputs, candidate: Outputs) -> dict[str, Any]:
    """Max |difference| per output against the parent's answers on the same rows; ``max_abs_diff`` is the
    worst over the float outputs (scores, probabilities, values). Integer outputs (a classifier's label)
    count as the share of rows that agree instead: one flipped label is not a drift of 1."""
    per_output = {name: max_abs_diff(parent[name], candidate[name], name) for name in parent}
    floats = [name for name in parent if parent[name].dtype.kind == "f"] or list(parent)
    agreement = {
        name: float(np.mean(_rows_equal(parent[name], candidate[name])))
        for name in parent
        if parent[name].dtype.kind in "biu"
    }
    return {
        "max_abs_diff": max((per_output[n] for n in floats), default=0.0),
        "per_output": per_output,
        "agreement": agreement,
    }


def _rows_equal(a: Array, b: Array) -> Array:
    eq = np.asarray(a).reshape(len(a), -1) == np.asarray(b).reshape(len(b), -1)
    return np.asarray(eq.all(axis=1))


def quality(outputs: Outputs, labels: Array) -> dict[str, Any]:
    """Accuracy and macro F1 for a classifier (its integer output, or the argmax of its scores when the
    labels are whole numbers), RMSE for a regressor (its first float output)."""
    from sklearn.metrics import accuracy_score, f1_score

    label_output = next(
        (k for k, v in outputs.items() if v.dtype.kind in "iu" and v.size == len(labels)), None
    )
    whole = labels.dtype.kind in "biu" or bool(np.all(np.mod(labels, 1) == 0))
    floats = [k for k, v in outputs.items() if v.dtype.kind == "f"]
    predicted: Array | None = None
    if label_output is not None:
        predicted = outputs[label_output].reshape(-1)
    elif whole and floats and outputs[floats[0]].ndim == 2 and outputs[floats[0]].shape[1] > 1:
        label_output = floats[0]
        predicted = outputs[label_output].argmax(axis=1)
    if predicted is not None:
        truth = labels.astype(predicted.dtype) if whole else labels
        return {
            "task": "classification",
            "output": label_output,
            "accuracy": float(accuracy_score(truth, predicted)),
            "f1": float(f1_score(truth, predicted, average="macro")),
        }
    if not floats:
        return {"task": "none", "reason": "no output to compare the labels with"}
    values = outputs[floats[0]].astype(np.float64).reshape(len(labels), -1)[:, 0]
    rmse = float(np.sqrt(np.mean((values - labels.astype(np.float64)) ** 2)))
    return {"task": "regression", "output": floats[0], "rmse": rmse}


def accuracy_drop(parent: dict[str, Any], candidate: dict[str, Any]) -> float | None:
    """How much worse the candidate is: accuracy points lost (0.01 = 1%) or RMSE gained (label units)."""
    if parent.get("task") == "classification":
        return float(parent["accuracy"] - candidate["accuracy"])
    if parent.get("task") == "regression":
        return float(candidate["rmse"] - parent["rmse"])
    return None
