"""The parity check of every import: run the converted model with ONNX Runtime, compare with the original."""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.errors import ConversionError
from conveyor.formats.samples import Array, Sample, match_inputs

DISAGREES = "conversion disagrees with the original"


def run_onnx(onnx_bytes: bytes, sample: Sample) -> dict[str, Array]:
    """Run ``sample`` through the model (an array feeds the only input; a dict feeds inputs by name)."""
    import onnxruntime as ort

    from conveyor.protocol.datatypes import numpy_dtype, ort_to_v2

    try:
        sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own untyped exceptions for any unloadable graph
        raise ConversionError(f"ONNX Runtime cannot load the model: {first_line(e)}") from e
    inputs = sess.get_inputs()
    names = [i.name for i in inputs]
    arrays = match_inputs(
        sample, names, "the sample", as_mapping="give the sample as a mapping of input name to array"
    )
    feeds = {
        i.name: np.ascontiguousarray(arrays[i.name], dtype=numpy_dtype(ort_to_v2(i.type))) for i in inputs
    }
    try:
        outputs = sess.run(None, feeds)
    except Exception as e:
        raise ConversionError(f"ONNX Runtime cannot run the model on the sample: {first_line(e)}") from e
    return {o.name: np.asarray(v) for o, v in zip(sess.get_outputs(), outputs, strict=True)}


def max_abs_diff(expected: Array, actual: Array, output: str) -> float:
    """Largest absolute difference; NaN in both at the same place agrees, NaN in one only is infinite."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape and expected.size == actual.size:
        # e.g. sklearn's binary decision_function is (n,), the converted model's scores are (n, 1)
        expected = expected.reshape(actual.shape)
    if expected.shape != actual.shape:
        raise ConversionError(
            f"{DISAGREES}: output {output!r} has shape {list(actual.shape)}, "
            f"the original {list(expected.shape)}"
        )
    if expected.size == 0:
        return 0.0
    diff = np.abs(expected - actual)
    both_nan = np.isnan(expected) & np.isnan(actual)
    diff = np.where(both_nan, 0.0, np.where(np.isnan(diff), np.inf, diff))
    return float(diff.max())


def report(per_output: dict[str, float], tolerance: float, samples: int, **extra: Any) -> dict[str, Any]:
    """The parity record; ConversionError with the numbers when an output is beyond tolerance."""
    worst = max(per_output, key=lambda k: per_output[k]) if per_output else None
    max_diff = per_output[worst] if worst is not None else 0.0
    if worst is not None and not max_diff <= tolerance:
        raise ConversionError(
            f"{DISAGREES}: max |diff| {max_diff:.3g} > tolerance {tolerance:g} (--tolerance) "
            f"on {samples} samples (output {worst!r})",
            max_abs_diff=max_diff,
            tolerance=tolerance,
            samples=samples,
            output=worst,
        )
    return {
        "checked": True,
        "max_abs_diff": max_diff,
        "tolerance": tolerance,
        "samples": samples,
        "per_output": dict(per_output),
        **extra,
    }


def not_checked(reason: str) -> dict[str, Any]:
    """The parity record of a version nothing could be compared on: shown by ``models show``, never silent."""
    return {"checked": False, "reason": reason}


def first_line(e: BaseException) -> str:
    """The first line of an exception's message: third-party errors are often many lines of context."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
