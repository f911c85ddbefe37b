"""Reference statistics of a model version's inputs, computed at registration: what drift is measured against.

Per input feature: count, mean, std, quantile bin edges and the reference's proportion in each bin, stored in
the version's metadata under ``reference``. A feature is a column of a 2-D input, the value of a 1-D input,
or, for inputs of rank 3 and more (images, sequences), the mean over all other axes of each index of axis 1
(the channel of an NCHW image). BYTES and BOOL inputs have no features.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from conveyor.errors import InvalidInput
from conveyor.formats.samples import Array, Sample, as_sample, load_sample, match_inputs
from conveyor.formats.signature import Signature

BINS = 10
MIN_ROWS = 50
"""Fewer rows than this give bins too noisy to judge serving data by (PSI's sampling error is about
(bins - 1) / rows): no reference is recorded."""
ROWS_PER_BIN = 20
MAX_FEATURES_PER_INPUT = 256
Reduce = Literal["value", "columns", "channel_mean"]
_NUMERIC = ("FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


def load_reference(path: str | Path) -> Sample:
    """What ``--sample`` reads (.npy, .npz, .csv), or .json (rows, or name -> rows)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return load_sample(path)
    if not path.is_file():
        raise InvalidInput(f"cannot read reference {path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return {str(k): _json_array(v, path) for k, v in data.items()}
        return _json_array(data, path)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InvalidInput(f"cannot read reference {path}: {e}") from e


def _json_array(value: Any, path: Path) -> Array:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf" or arr.ndim == 0 or arr.shape[0] == 0:
        raise InvalidInput(f"cannot read reference {path}: expected a non-empty numeric array of rows")
    return arr


def reduce_of(shape_rank: int) -> Reduce:
    """How an input of this rank (batch axis included) becomes features."""
    return "value" if shape_rank <= 1 else "columns" if shape_rank == 2 else "channel_mean"


def features_of(arr: Array, reduce: Reduce) -> Array:
    """The (rows, features) float64 matrix of one input, reduced as the reference was."""
    x = np.asarray(arr, dtype=np.float64)
    if reduce == "value":
        return x.reshape(-1, 1)
    if reduce == "columns":
        return x
    means: Array = x.reshape(x.shape[0], x.shape[1], -1).mean(axis=2)
    return means


def bin_index(edges: Array, values: Array) -> Array:
    """The bin of each value: below the first edge is bin 0, at or above the last is bin len(edges)."""
    return np.searchsorted(edges, values, side="right")


def compute_reference(sample: Any, signature: Signature, *, source: str) -> dict[str, Any]:
    """The ``reference`` metadata of a version from ``sample``; ``{"available": False, "reason": ...}`` when
    it gives nothing to compare serving inputs with."""
    normalized = as_sample(sample)
    if normalized is None:
        return unavailable("no sample: register with --sample or --reference to measure drift")
    arrays = _by_input(normalized, signature)
    if isinstance(arrays, str):
        return unavailable(arrays)
    features: list[dict[str, Any]] = []
    inputs: dict[str, Reduce] = {}
    skipped: list[str] = []
    rows = min(int(a.shape[0]) for a in arrays.values())
    if rows < MIN_ROWS:
        return unavailable(
            f"the {source} has {rows} rows; drift needs at least {MIN_ROWS} (give --reference)"
        )
    bins = min(BINS, rows // ROWS_PER_BIN)
    for spec in signature.inputs:
        if spec.datatype not in _NUMERIC:
            skipped.append(f"{spec.name} ({spec.datatype}: not numeric)")
            continue
        arr = arrays.get(spec.name)
        if arr is None:
            skipped.append(f"{spec.name} (not in the {source})")
            continue
        reduce = reduce_of(arr.ndim)
        x = features_of(arr, reduce)
        if x.shape[1] > MAX_FEATURES_PER_INPUT:
            skipped.append(
                f"{spec.name} features {MAX_FEATURES_PER_INPUT} to {x.shape[1] - 1} (over the limit)"
            )
            x = x[:, :MAX_FEATURES_PER_INPUT]
        inputs[spec.name] = reduce
        for j in range(x.shape[1]):
            name = spec.name if reduce == "value" else f"{spec.name}[{j}]"
            stats = feature_stats(x[:, j], bins)
            if stats is not None:
                features.append({"name": name, "input": spec.name, "index": j, **stats})
    if not features:
        return unavailable("no numeric input with finite values in the sample" + _listed(skipped))
    return {
        "available": True,
        "source": source,
        "rows": rows,
        "bins": bins,
        "inputs": inputs,
        "features": features,
        "skipped": skipped,
    }


def feature_stats(values: Array, bins: int) -> dict[str, Any] | None:
    """count, mean, std, inner bin edges (deduplicated quantiles) and the proportion in each bin."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    counts = np.bincount(bin_index(edges, v), minlength=len(edges) + 1)
    return {
        "count": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "edges": [float(e) for e in edges],
        "expected": [float(c) / v.size for c in counts],
    }


def unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def _by_input(sample: Sample, signature: Signature) -> dict[str, Array] | str:
    names = [t.name for t in signature.inputs]
    try:
        return match_inputs(
            sample,
            names,
            "the sample",
            as_mapping="give the reference as a mapping of input name to rows",
            allow_missing=True,
        )
    except InvalidInput as e:
        return e.message


def _listed(skipped: list[str]) -> str:
    return f" (skipped: {'; '.join(skipped)})" if skipped else ""
