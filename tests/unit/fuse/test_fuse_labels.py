"""When an averaging ensemble can answer the class of the highest probability, and when it votes instead."""

from __future__ import annotations

import numpy as np
import onnx

from conveyor.formats.signature import TensorSpec
from conveyor.fuse.labels import SoftLabel, argmax_labels, classes_of, near_ties, soft_label
from tests.unit.fuse.conftest import Models

LABEL = TensorSpec("label", "INT64", (-1,))
PROBA = TensorSpec("probabilities", "FP32", (-1, 3))


def test_classes_are_read_from_onnx_ml_operators_and_from_an_mlps_table(models: Models) -> None:
    assert classes_of(onnx.load_from_string(models.onnx["logreg"])) == (0, 1, 2)  # LinearClassifier
    assert classes_of(onnx.load_from_string(models.onnx["mlp"])) == (0, 1, 2)  # ArrayFeatureExtractor
    assert classes_of(onnx.load_from_string(models.onnx["linear"])) is None  # a regressor names none


def test_parts_naming_other_classes_or_no_probabilities_column_per_class_are_voted() -> None:
    same = soft_label(LABEL, [PROBA], [(0, 1, 2), (0, 1, 2)])
    assert same == SoftLabel("label", "probabilities", (0, 1, 2))
    assert soft_label(LABEL, [PROBA], [(0, 1, 2), (1, 2, 3)]) is None
    assert soft_label(LABEL, [PROBA], [(0, 1, 2), None]) is None
    assert soft_label(LABEL, [TensorSpec("scores", "FP32", (-1, 2))], [(0, 1, 2), (0, 1, 2)]) is None
    two = [PROBA, TensorSpec("scores", "FP32", (-1, 3))]
    assert soft_label(LABEL, two, [(0, 1, 2), (0, 1, 2)]) is None  # which one is the probabilities?


def test_the_soft_label_maps_the_argmax_through_the_classes_and_ties_are_found() -> None:
    rule = SoftLabel("label", "probabilities", (3, 7, 9))
    p = np.array([[0.2, 0.5, 0.3], [0.6, 0.2, 0.2], [0.4, 0.4, 0.2], [0.1, 0.45, 0.450001]], dtype=np.float32)
    np.testing.assert_array_equal(argmax_labels(rule, p, np.dtype(np.int64)), [7, 3, 3, 9])
    np.testing.assert_array_equal(near_ties(p, 1e-5), [False, False, True, True])
