"""The rows an optimization is calibrated and judged on: data files, or rows drawn from its reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from conveyor.errors import InvalidInput
from conveyor.formats.samples import Array, Sample, load_sample, match_inputs

__all__ = [
    "Array",
    "Inputs",
    "draw_from_reference",
    "fit_inputs",
    "load_inputs",
    "load_labels",
    "row_count",
    "take",
]
from conveyor.formats.signature import Signature
from conveyor.protocol.datatypes import numpy_dtype

Inputs = dict[str, Array]
DRAWN_ROWS = 256
"""Rows drawn from reference statistics when no data file is given."""


def load_inputs(path: Path, signature: Signature, what: str) -> Inputs:
    """A data file (.npy, .npz, .csv, as ``--sample`` reads them) as one array per model input, of the
    declared dtypes; InvalidInput naming the file when it does not fit the model."""
    return fit_inputs(load_sample(path), signature, f"{what} {path}")


def fit_inputs(sample: Sample, signature: Signature, what: str) -> Inputs:
    names = [t.name for t in signature.inputs]
    arrays = match_inputs(sample, names, what, as_mapping="give an .npz with one array per input")
    out: Inputs = {}
    for spec in signature.inputs:
        if spec.datatype == "BYTES":
            raise InvalidInput(f"{what}: input {spec.name!r} is BYTES; only numeric inputs can be measured")
        arr = arrays[spec.name]
        if arr.ndim != len(spec.shape) or any(
            d >= 0 and d != n for d, n in zip(spec.shape[1:], arr.shape[1:], strict=True)
        ):
            raise InvalidInput(
                f"{what}: input {spec.name!r} has shape {list(arr.shape)}, the model expects "
                f"{list(spec.shape)} (-1: any)"
            )
        out[spec.name] = np.ascontiguousarray(arr, dtype=numpy_dtype(spec.datatype))
    counts = {int(a.shape[0]) for a in out.values()}
    if len(counts) > 1:
        raise InvalidInput(f"{what}: the inputs have different numbers of rows {sorted(counts)}")
    return out


def load_labels(path: Path, rows: int) -> Array:
    """One label per data row (.npy, .csv: one column, or a 1-D array)."""
    labels = load_sample(path)
    if isinstance(labels, dict):
        if len(labels) != 1:
            raise InvalidInput(f"labels {path}: give one array of labels, not {len(labels)}")
        labels = next(iter(labels.values()))
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise InvalidInput(f"labels {path}: expected one label per row, got shape {list(labels.shape)}")
    if len(labels) != rows:
        raise InvalidInput(f"labels {path}: {len(labels)} labels for {rows} data rows")
    return labels


def draw_from_reference(
    reference: dict[str, Any] | None, signature: Signature, rows: int = DRAWN_ROWS, seed: int = 0
) -> Inputs | str:
    """Rows drawn from the per-feature histograms a version recorded at registration (its ``reference``),
    or why none can be: each feature independently, uniform within its quantile bins. An approximation of
    the registration sample (correlations are lost), good enough to calibrate ranges; a real
    ``--calibration`` file is better."""
    if not reference or not reference.get("available"):
        reason = (reference or {}).get("reason", "it was registered before reference statistics")
        return f"the version has no reference statistics ({reason})"
    reduces: dict[str, str] = reference.get("inputs", {})
    by_input: dict[str, dict[int, dict[str, Any]]] = {}
    for feature in reference.get("features", []):
        by_input.setdefault(feature["input"], {})[int(feature["index"])] = feature
    rng = np.random.default_rng(seed)
    out: Inputs = {}
    for spec in signature.inputs:
        reduce = reduces.get(spec.name)
        features = by_input.get(spec.name, {})
        if reduce == "value" and 0 in features:
            columns = [_draw(features[0], rows, rng)]
        elif reduce == "columns" and len(spec.shape) == 2 and spec.shape[1] == len(features) > 0:
            columns = [_draw(features[j], rows, rng) for j in range(spec.shape[1])]
        else:
            return f"its reference statistics cannot be turned back into rows of input {spec.name!r}"
        arr = np.stack(columns, axis=1) if reduce == "columns" else columns[0]
        dtype = numpy_dtype(spec.datatype)
        out[spec.name] = np.ascontiguousarray(np.round(arr) if dtype.kind in "iu" else arr, dtype=dtype)
    return out


def _draw(feature: dict[str, Any], rows: int, rng: np.random.Generator) -> Array:
    edges = np.asarray(feature.get("edges", []), dtype=np.float64)
    mean, std = float(feature["mean"]), float(feature["std"])
    if edges.size == 0:
        return np.full(rows, mean)
    # The outer bins' far ends were not recorded: they reach mean ± 3 std. Wide rather than narrow: static
    # quantization clips whatever lies outside the calibrated range, which costs more than coarser steps.
    low = np.concatenate([[min(edges[0], mean - 3 * std)], edges])
    high = np.concatenate([edges, [max(edges[-1], mean + 3 * std)]])
    p = np.asarray(feature["expected"], dtype=np.float64)
    bins = rng.choice(len(p), size=rows, p=p / p.sum())
    drawn: Array = rng.uniform(low[bins], high[bins])
    return drawn


def take(inputs: Inputs, n: int) -> Inputs:
    """The first ``n`` rows of every input, repeated when there are fewer (a batch to time)."""
    first = next(iter(inputs.values()))
    idx = np.arange(n) % int(first.shape[0])
    return {k: np.ascontiguousarray(v[idx]) for k, v in inputs.items()}


def row_count(inputs: Inputs) -> int:
    return int(next(iter(inputs.values())).shape[0])
