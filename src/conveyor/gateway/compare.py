"""Comparing two V2 answers to the same request: stable's and the candidate's (shadow, canary compare).

Outputs are matched by name and decoded with the one codec (JSON or the binary extension alike). A float
output agrees when its largest absolute difference is within the tolerance (NaN agrees with NaN only); an
integer, bool or bytes output, and the argmax of a float output shaped [..., k > 1] (class scores), are
labels: they agree only when equal. The result is the worst found: ``labels_differ``, then
``values_differ`` (also for answers of different outputs, shapes or types), else ``agree``; ``failed`` when
either answer is an error or cannot be decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from conveyor.errors import ConveyorError
from conveyor.protocol.codec import decode_infer_response
from conveyor.protocol.service import EncodedResponse
from conveyor.protocol.types import ResponseOutput

AGREE = "agree"
VALUES_DIFFER = "values_differ"
LABELS_DIFFER = "labels_differ"
FAILED = "failed"
RESULTS = (AGREE, VALUES_DIFFER, LABELS_DIFFER, FAILED)


@dataclass(frozen=True, slots=True)
class Comparison:
    result: str
    max_abs_difference: float | None = None
    """The largest absolute difference over the float outputs; None when none was compared."""


def compare_answers(stable: EncodedResponse, candidate: EncodedResponse, tolerance: float) -> Comparison:
    """Compare two inference answers' bodies; never raises for what is in them."""
    try:
        a = decode_infer_response(stable.body, stable.json_length).outputs
        b = decode_infer_response(candidate.body, candidate.json_length).outputs
    except ConveyorError:
        return Comparison(FAILED)
    return compare_outputs(a, b, tolerance)


def compare_outputs(a: list[ResponseOutput], b: list[ResponseOutput], tolerance: float) -> Comparison:
    theirs = {o.name: o.data for o in b}
    if len(theirs) != len(a) or any(o.name not in theirs for o in a):
        return Comparison(VALUES_DIFFER)
    worst: float | None = None
    labels_differ = structure_differs = False
    for out in a:
        x, y = np.asarray(out.data), np.asarray(theirs[out.name])
        if x.shape != y.shape or _is_float(x) != _is_float(y):
            structure_differs = True
            continue
        if not _is_float(x):
            labels_differ = labels_differ or not np.array_equal(x, y)
            continue
        difference = _max_abs_difference(x, y)
        worst = difference if worst is None else max(worst, difference)
        if x.ndim >= 2 and x.shape[-1] > 1 and x.size and not np.array_equal(x.argmax(-1), y.argmax(-1)):
            labels_differ = True
    if labels_differ:
        return Comparison(LABELS_DIFFER, worst)
    if structure_differs or (worst is not None and not worst <= tolerance):
        return Comparison(VALUES_DIFFER, worst)
    return Comparison(AGREE, worst)


def _is_float(x: np.ndarray[Any, Any]) -> bool:
    return bool(x.dtype.kind == "f")


def _max_abs_difference(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    """The largest |x - y|: 0 where both are equal (infinities included) or both NaN, inf where one is."""
    if x.size == 0:
        return 0.0
    a, b = x.astype(np.float64, copy=False), y.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        difference = np.abs(a - b)
    difference[(a == b) | (np.isnan(a) & np.isnan(b))] = 0.0
    difference[np.isnan(difference)] = np.inf
    return float(difference.max())
