"""Sample data for parity checks: load it from .npy / .npz / .csv files and normalize what callers pass."""

from __future__ import annotations

import csv
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from conveyor.errors import InvalidInput

Array: TypeAlias = npt.NDArray[Any]
Sample: TypeAlias = Array | dict[str, Array]
SAMPLE_SUFFIXES = (".npy", ".npz", ".csv")


def load_sample(path: str | Path) -> Sample:
    """Read a sample file: ``.npy`` (one array), ``.npz`` (one array per input name) or ``.csv`` (numeric)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAMPLE_SUFFIXES:
        raise InvalidInput(
            f"cannot read sample {path}: unsupported format {suffix or '(no extension)'!r}; "
            f"use {', '.join(SAMPLE_SUFFIXES)}"
        )
    if not path.is_file():
        raise InvalidInput(f"cannot read sample {path}: no such file")
    try:
        if suffix == ".npy":
            return _numeric(np.load(path, allow_pickle=False), path)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: _numeric(npz[key], path, key) for key in npz.files}
            if not arrays:
                raise InvalidInput(f"cannot read sample {path}: the archive holds no arrays")
            return arrays
        return _load_csv(path)
    except InvalidInput:
        raise
    # numpy reports a corrupt file as ValueError / OSError / BadZipFile; pickled objects as ValueError.
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InvalidInput(f"cannot read sample {path}: {_first_line(e)}") from e


def as_sample(sample: Any) -> Sample | None:
    """Normalize a caller's sample: None, an array, a mapping name -> array, or a path to a sample file.

    A torch tensor counts as an array, and a tuple of tensors as a module's positional inputs (named
    ``input_0``, ``input_1``...), so a sample can be passed as the module itself is called.
    """
    if sample is None:
        return None
    if isinstance(sample, str | Path):
        return load_sample(sample)
    if isinstance(sample, Mapping):
        if not sample:
            raise InvalidInput("sample is an empty mapping; give at least one input")
        return {str(k): _numeric(_array(v), None, str(k)) for k, v in sample.items()}
    if _is_tensor(sample):
        return _numeric(_array(sample), None)
    if isinstance(sample, tuple | list) and sample and all(_is_tensor(t) for t in sample):
        if len(sample) == 1:
            return _numeric(_array(sample[0]), None)
        return {f"input_{i}": _numeric(_array(t), None, f"input_{i}") for i, t in enumerate(sample)}
    if isinstance(sample, np.ndarray | Sequence):
        return _numeric(np.asarray(sample), None)
    raise InvalidInput(
        f"sample must be a numpy array, a torch tensor (or a tuple of them, one per input), a mapping of "
        f"input name to array, or a path to {'/'.join(SAMPLE_SUFFIXES)}; got {type(sample).__name__}"
    )


def _is_tensor(obj: object) -> bool:
    # a tensor can only exist once torch is imported, so never import it just to ask
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _array(value: Any) -> Array:
    if _is_tensor(value):
        # off the autograd graph and the GPU, as the module's own outputs are compared
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)


def rows(sample: Sample) -> int:
    """Number of samples (the batch dimension)."""
    first = next(iter(sample.values())) if isinstance(sample, dict) else sample
    return int(first.shape[0]) if first.ndim else 1


def match_inputs(
    sample: Sample, names: Sequence[str], what: str, *, as_mapping: str, allow_missing: bool = False
) -> dict[str, Array]:
    """``sample`` as one array per input name: an array feeds a model's only input, a mapping must name the
    model's inputs (all of them unless ``allow_missing``). InvalidInput, starting with ``what``, when it does
    not fit; ``as_mapping`` says how to give several inputs (the remedy named for a bare array)."""
    if isinstance(sample, dict):
        missing = [] if allow_missing else [n for n in names if n not in sample]
        unknown = [k for k in sample if k not in names]
        if missing or unknown:
            raise InvalidInput(
                f"{what} does not match the model inputs {list(names)}"
                + (f": missing {missing}" if missing else "")
                + (f"{',' if missing else ':'} unknown {unknown}" if unknown else "")
            )
        return dict(sample)
    if len(names) != 1:
        raise InvalidInput(f"{what}: the model has inputs {list(names)}; {as_mapping}")
    return {names[0]: sample}


def _numeric(arr: Array, path: Path | None, key: str | None = None) -> Array:
    where = f"sample {path}" if path else "sample"
    if key is not None:
        where += f" (array {key!r})"
    if arr.dtype.kind not in "biuf":
        raise InvalidInput(f"{where} is not numeric: dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise InvalidInput(f"{where} holds no rows: shape {arr.shape}")
    return arr


def _load_csv(path: Path) -> Array:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        lines = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if not lines:
        raise InvalidInput(f"cannot read sample {path}: the file is empty")
    if not all(_is_number(cell) for cell in lines[0][1]):
        lines = lines[1:]  # a header row: column names, not data
        if not lines:
            raise InvalidInput(f"cannot read sample {path}: only a header row, no data")
    table = [row for _, row in lines]
    width = len(table[0])
    for line, row in lines:
        if len(row) != width:
            raise InvalidInput(
                f"cannot read sample {path}: line {line} has {len(row)} columns, expected {width}"
            )
        for cell in row:
            if not _is_number(cell):
                raise InvalidInput(f"cannot read sample {path}: line {line} has a non-numeric value {cell!r}")
    return np.array([[float(cell) for cell in row] for row in table], dtype=np.float64)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
