"""The pure parts: the gate, drift and quality numbers, rows drawn from reference statistics, data checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conveyor.errors import InvalidInput
from conveyor.formats.signature import Signature, TensorSpec
from conveyor.observe.reference import compute_reference
from conveyor.optimize.data import draw_from_reference, fit_inputs, load_labels, take
from conveyor.optimize.gate import judge
from conveyor.optimize.report import accuracy_drop, drift, quality

SIG = Signature(inputs=(TensorSpec("x", "FP32", (-1, 3)),), outputs=(TensorSpec("y", "FP32", (-1, 1)),))


def test_the_gate_names_every_bound_broken_with_the_numbers() -> None:
    assert judge(0.01, 0.0, max_drift=0.05, max_accuracy_drop=0.01) == []
    assert judge(0.01, 0.5, max_drift=None, max_accuracy_drop=None) == []  # no bound: nothing to refuse
    assert judge(0.2, 0.03, max_drift=0.05, max_accuracy_drop=0.01) == [
        "max |drift| 0.2 > 0.05 (--max-drift)",
        "accuracy drop 0.03 > 0.01 (--max-accuracy-drop)",
    ]
    assert judge(0.0, 1.5, max_drift=None, max_accuracy_drop=1.0, task="regression") == [
        "RMSE increase 1.5 > 1 (--max-accuracy-drop)"
    ]
    assert judge(math.nan, None, max_drift=10.0, max_accuracy_drop=None) == [
        "max |drift| nan > 10 (--max-drift)"
    ]


def test_drift_is_the_worst_float_output_and_labels_count_as_agreement() -> None:
    parent = {
        "label": np.array([0, 1, 2, 1]),
        "p": np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.4, 0.6]]),
    }
    child = {"label": np.array([0, 1, 1, 1]), "p": np.array([[0.8, 0.2], [0.2, 0.8], [0.5, 0.5], [0.4, 0.6]])}
    d = drift(parent, child)
    assert d["max_abs_diff"] == pytest.approx(0.1)  # a flipped label is not a drift of 1
    assert d["per_output"]["label"] == 1.0
    assert d["agreement"] == {"label": 0.75}


def test_quality_of_a_classifier_a_scorer_and_a_regressor() -> None:
    labels = np.array([0, 1, 1, 0])
    by_label = quality({"label": np.array([0, 1, 0, 0]), "p": np.zeros((4, 2), np.float32)}, labels)
    assert by_label == {
        "task": "classification",
        "output": "label",
        "accuracy": 0.75,
        "f1": pytest.approx(0.7333, 1e-3),
    }
    scores = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [0.6, 0.4]], np.float32)
    assert quality({"scores": scores}, labels)["accuracy"] == 1.0  # argmax of the scores
    reg = quality({"y": np.array([[1.0], [2.0], [4.0]], np.float32)}, np.array([1.0, 2.0, 2.0]))
    assert reg == {"task": "regression", "output": "y", "rmse": pytest.approx(math.sqrt(4 / 3))}
    assert accuracy_drop(by_label, {**by_label, "accuracy": 0.5}) == 0.25
    assert accuracy_drop(reg, {**reg, "rmse": reg["rmse"] + 0.5}) == pytest.approx(0.5)


def test_rows_drawn_from_reference_statistics_follow_each_feature() -> None:
    rng = np.random.default_rng(1)
    sample = np.column_stack([rng.normal(0, 1, 500), rng.uniform(10, 20, 500), np.full(500, 3.0)])
    reference = compute_reference(sample.astype(np.float32), SIG, source="sample")
    drawn = draw_from_reference(reference, SIG, rows=2000)
    assert isinstance(drawn, dict)
    x = drawn["x"]
    assert x.shape == (2000, 3) and x.dtype == np.float32
    assert abs(x[:, 0].mean()) < 0.1 and 0.8 < x[:, 0].std() < 1.2
    # 10 to 20: the outer bins reach mean ± 3 std (about 15 ± 8.7), wide rather than clipping
    f = reference["features"][1]
    assert f["mean"] - 3 * f["std"] <= x[:, 1].min() < 10 and 20 < x[:, 1].max() <= f["mean"] + 3 * f["std"]
    assert np.all(x[:, 2] == 3.0)


def test_no_rows_can_be_drawn_without_usable_reference_statistics() -> None:
    assert draw_from_reference(None, SIG) == (
        "the version has no reference statistics (it was registered before reference statistics)"
    )
    reason = draw_from_reference({"available": False, "reason": "no sample"}, SIG)
    assert reason == "the version has no reference statistics (no sample)"
    image = Signature(inputs=(TensorSpec("x", "FP32", (-1, 3, 8, 8)),), outputs=())
    reference = compute_reference(np.zeros((60, 3, 8, 8), np.float32), image, source="sample")
    assert draw_from_reference(reference, image) == (
        "its reference statistics cannot be turned back into rows of input 'x'"
    )


def test_data_that_does_not_fit_the_model_is_refused_naming_the_file() -> None:
    with pytest.raises(
        InvalidInput, match=r"^data d.npy: input 'x' has shape \[4, 2\], the model expects \[-1, 3\] \("
    ):
        fit_inputs(np.zeros((4, 2)), SIG, "data d.npy")
    with pytest.raises(
        InvalidInput, match=r"does not match the model inputs \['x'\]: missing \['x'\], unknown \['z'\]"
    ):
        fit_inputs({"z": np.zeros((4, 3))}, SIG, "data d.npz")
    assert fit_inputs(np.zeros((4, 3)), SIG, "data")["x"].dtype == np.float32


def test_labels_are_one_per_row(tmp_path: Path) -> None:
    np.save(tmp_path / "col.npy", np.array([[1], [0], [1]]))
    assert load_labels(tmp_path / "col.npy", 3).tolist() == [1, 0, 1]
    np.save(tmp_path / "wide.npy", np.zeros((3, 2)))
    with pytest.raises(InvalidInput, match=r"expected one label per row, got shape \[3, 2\]"):
        load_labels(tmp_path / "wide.npy", 3)


def test_a_batch_to_time_repeats_rows_when_there_are_fewer() -> None:
    batch = take({"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, 5)
    assert batch["x"][:, 0].tolist() == [0, 3, 0, 3, 0]
