"""A classifier's classes, read from its graph, so that an averaging ensemble can answer the class of the
highest averaged probability (a soft vote) rather than a majority of the parts' labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from conveyor.formats.samples import Array
from conveyor.formats.signature import TensorSpec

CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints")
"""Where the ONNX-ML classifier operators (LinearClassifier, TreeEnsembleClassifier, SVMClassifier...) keep
their integer classes."""


@dataclass(frozen=True)
class SoftLabel:
    """The fused ``label`` is ``classes[argmax(probabilities)]`` of the fused probabilities."""

    label: str  # the fused integer output
    probabilities: str  # the fused float output it is the argmax of
    classes: tuple[int, ...]


def classes_of(model: onnx.ModelProto) -> tuple[int, ...] | None:
    """The integer classes a classifier's graph names, or None when it names none or more than one set:
    the ONNX-ML classifier operators' class labels, or the INT64 table an ``ArrayFeatureExtractor`` maps
    the argmax through (skl2onnx's MLPs and pipelines)."""
    graph = model.graph
    tables = {t.name: t for t in graph.initializer}
    found: set[tuple[int, ...]] = set()
    for node in graph.node:
        for attr in node.attribute:
            if attr.name in CLASS_ATTRIBUTES and attr.ints:
                found.add(tuple(int(c) for c in attr.ints))
        if node.op_type == "ArrayFeatureExtractor" and node.input and node.input[0] in tables:
            table = numpy_helper.to_array(tables[node.input[0]])
            if table.dtype.kind in "iu" and table.ndim == 1:
                found.add(tuple(int(c) for c in table))
    return found.pop() if len(found) == 1 else None


def soft_label(
    label: TensorSpec, floats: list[TensorSpec], classes: list[tuple[int, ...] | None]
) -> SoftLabel | None:
    """The soft rule for ``label`` when every part names the same classes and exactly one float output has
    one column per class (the probabilities); else None (the label is voted)."""
    first = classes[0]
    if first is None or any(c != first for c in classes):
        return None
    columns = [f for f in floats if len(f.shape) == 2 and f.shape[1] == len(first)]
    if len(columns) != 1:
        return None
    return SoftLabel(label.name, columns[0].name, first)


def argmax_labels(rule: SoftLabel, probabilities: Array, dtype: np.dtype[np.generic]) -> Array:
    """What the fused graph answers for the label: the class of each row's highest probability (the first
    of equal ones, as ONNX's ArgMax)."""
    classes = np.asarray(rule.classes, dtype=dtype)
    return np.asarray(classes[np.argmax(probabilities, axis=-1)])


def near_ties(probabilities: Array, within: float) -> Array:
    """Rows whose two highest probabilities are within ``within``: float rounding may pick either class."""
    top = np.sort(np.asarray(probabilities, dtype=np.float64), axis=-1)
    if top.shape[-1] < 2:
        return np.zeros(top.shape[:-1], dtype=bool)
    return np.asarray(top[..., -1] - top[..., -2] <= within)
