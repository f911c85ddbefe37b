"""Ensembles of real scikit-learn models: the fused graph equals the parts run separately and combined in
numpy (to 1e-5; labels exactly), for mean, weighted and vote, and what is registered."""

from __future__ import annotations

import numpy as np
import pytest

from conveyor.formats.parity import run_onnx
from conveyor.fuse import TOLERANCE, FuseOptions, fuse
from conveyor.fuse.ensemble import vote
from conveyor.registry import Registry
from tests.unit.fuse.conftest import Models, Register


def _run(registry: Registry, ref: str, x: np.ndarray) -> dict[str, np.ndarray]:
    return run_onnx(registry.artifact_bytes(registry.resolve(ref)), x)


def test_mean_of_classifiers_averages_probabilities_and_answers_the_class_of_the_highest(
    registry: Registry, register: Register, models: Models
) -> None:
    refs = [register("logreg"), register("mlp"), register("logreg_c")]
    result = fuse(registry, "ens", refs, FuseOptions(ensemble="mean"))

    v = result.version
    assert v is not None and v.ref == "ens:1" and v.parent_version is None
    assert v.metadata["parts"] == ["logreg:1", "mlp:1", "logreg_c:1"]
    assert v.metadata["source"] == "ensemble mean of logreg:1, mlp:1, logreg_c:1"
    assert v.metadata["fusion"]["parity"]["problems"] == []
    assert v.metadata["fusion"]["parity"]["source"] == "drawn from logreg:1's reference statistics"
    assert v.metadata["reference"] == registry.resolve("logreg:1").metadata["reference"]
    assert [t["name"] for t in v.signature["outputs"]] == ["label", "probabilities"]

    assert v.metadata["fusion"]["labels"] == {"label": "the class of the highest probabilities"}

    got = _run(registry, "ens:1", models.x)
    parts = [_run(registry, r, models.x) for r in refs]
    mean = np.mean([p["probabilities"] for p in parts], axis=0)
    assert np.abs(got["probabilities"] - mean).max() <= TOLERANCE
    # soft voting as scikit-learn's VotingClassifier(voting="soft") does it (the classes are 0, 1, 2)
    np.testing.assert_array_equal(got["label"], np.argmax(mean, axis=1))
    labels = np.stack([p["label"] for p in parts], axis=1)
    hard = np.array([np.argmax(np.bincount(row, minlength=3)) for row in labels])
    assert (hard != got["label"]).any()  # not the majority: the averaged probabilities decided


def test_vote_of_classifiers_answers_the_majority_label(
    registry: Registry, register: Register, models: Models
) -> None:
    refs = [register("logreg"), register("mlp"), register("logreg_c")]
    result = fuse(registry, "ens", refs, FuseOptions(ensemble="vote"))

    assert result.version is not None
    assert result.version.metadata["fusion"]["labels"] == {
        "label": "the majority of the parts' labels, ties to the smallest"
    }
    got = _run(registry, "ens:1", models.x)
    parts = [_run(registry, r, models.x) for r in refs]
    # hard voting as scikit-learn's VotingClassifier does it: the most common label, ties to the smallest
    labels = np.stack([p["label"] for p in parts], axis=1)
    expected = np.array([np.argmax(np.bincount(row, minlength=3)) for row in labels])
    np.testing.assert_array_equal(got["label"], expected)
    assert (labels[:, 0] != labels[:, 1]).any()  # the parts disagree somewhere: the vote decided something
    mean = np.mean([p["probabilities"] for p in parts], axis=0)
    assert np.abs(got["probabilities"] - mean).max() <= TOLERANCE


def test_weighted_normalizes_the_weights(registry: Registry, register: Register, models: Models) -> None:
    refs = [register("logreg"), register("mlp")]
    result = fuse(registry, "ens", refs, FuseOptions(ensemble="weighted", weights=[3.0, 1.0]))

    assert result.version is not None
    assert result.what == "ensemble weighted of logreg:1, mlp:1 (weights 3, 1)"
    got = _run(registry, "ens:1", models.x)
    a, b = (_run(registry, r, models.x) for r in refs)
    want = 0.75 * a["probabilities"] + 0.25 * b["probabilities"]
    assert np.abs(got["probabilities"] - want).max() <= TOLERANCE
    np.testing.assert_array_equal(got["label"], np.argmax(want, axis=1))


def test_vote_with_ties_takes_the_smallest_label(
    registry: Registry, register: Register, models: Models
) -> None:
    refs = [register("logreg"), register("logreg_c")]
    fuse(registry, "ens", refs, FuseOptions(ensemble="vote"))

    got = _run(registry, "ens:1", models.x)["label"]
    a, b = (_run(registry, r, models.x)["label"] for r in refs)
    assert (a != b).any()
    np.testing.assert_array_equal(got, np.minimum(a, b))  # two parts: every disagreement is a tie


def test_mean_of_regressors(registry: Registry, register: Register, models: Models) -> None:
    refs = [register("linear"), register("mlp_reg")]
    fuse(registry, "reg", refs, FuseOptions(ensemble="mean"))

    got = _run(registry, "reg:1", models.x)
    a, b = (_run(registry, r, models.x) for r in refs)
    [name] = got
    assert np.abs(got[name] - (a[name] + b[name]) / 2).max() <= TOLERANCE


def test_parts_of_different_opsets_are_converted_to_the_highest(
    registry: Registry, register: Register, models: Models
) -> None:
    refs = [register("logreg_opset15"), register("mlp")]
    result = fuse(registry, "ens", refs, FuseOptions(ensemble="mean"))

    assert result.version is not None and result.parity["problems"] == []


def test_vote_in_numpy_counts_weights_and_breaks_ties_to_the_smallest_label() -> None:
    labels = [np.array([2, 1, 0, 5]), np.array([1, 1, 3, 4]), np.array([1, 0, 3, 5])]
    np.testing.assert_array_equal(vote(labels, (1.0, 1.0, 1.0)), [1, 1, 3, 5])
    np.testing.assert_array_equal(vote(labels, (5.0, 1.0, 1.0)), [2, 1, 0, 5])
    np.testing.assert_array_equal(vote(labels[:2], (1.0, 1.0)), [1, 1, 0, 4])


@pytest.mark.parametrize(
    ("keys", "options", "message"),
    [
        (
            ["logreg", "linear"],
            FuseOptions(ensemble="mean"),
            "ensemble parts give different outputs: logreg:1 gives label INT64 [-1], probabilities FP32 "
            "[-1, 3]; linear:1 gives variable FP32 [-1, 1]",
        ),
        (
            ["linear", "mlp_reg"],
            FuseOptions(ensemble="vote"),
            "--ensemble vote needs a label output (an integer tensor, as a classifier's 'label'); "
            "linear:1 gives variable FP32 [-1, 1]: use --ensemble mean",
        ),
        (
            ["logreg", "mlp"],
            FuseOptions(ensemble="weighted", weights=[1.0]),
            "--weights has 1 numbers for 2 parts: give one per part",
        ),
        (
            ["logreg", "mlp"],
            FuseOptions(ensemble="weighted"),
            "--ensemble weighted needs --weights: one number per part",
        ),
        (
            ["logreg", "mlp"],
            FuseOptions(ensemble="mean", weights=[1.0, 2.0]),
            "--weights goes with --ensemble weighted (or vote); mean gives every part the same",
        ),
        (
            ["logreg", "mlp"],
            FuseOptions(ensemble="weighted", weights=[1.0, -1.0]),
            "--weights must be numbers >= 0, not all 0: [1.0, -1.0]",
        ),
    ],
)
def test_parts_that_do_not_fit_are_refused_naming_what_differs(
    registry: Registry, register: Register, keys: list[str], options: FuseOptions, message: str
) -> None:
    from conveyor.errors import InvalidInput

    refs = [register(k) for k in keys]
    with pytest.raises(InvalidInput) as e:
        fuse(registry, "ens", refs, options)
    assert e.value.message == message
    assert "ens" not in {m.name for m in registry.list_models()}


def test_different_inputs_are_refused(registry: Registry, register: Register, models: Models) -> None:
    from conveyor.errors import InvalidInput

    refs = [register("logreg"), register("pca_head", data=_classifier_on(3))]
    with pytest.raises(InvalidInput) as e:
        fuse(registry, "ens", refs, FuseOptions(ensemble="mean"))
    assert e.value.message == (
        "ensemble parts take different inputs: logreg:1 takes input FP32 [-1, 6]; "
        "pca_head:1 takes input FP32 [-1, 3]"
    )


def _classifier_on(features: int) -> bytes:
    from sklearn.linear_model import LogisticRegression

    from tests.unit.fuse.conftest import _convert

    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, features)).astype(np.float32)
    return _convert(LogisticRegression().fit(x, rng.integers(0, 3, 60)), features)


def test_the_check_flags_a_float_off_by_more_than_the_tolerance_and_any_other_label() -> None:
    from conveyor.fuse.fuser import compare

    want = {"label": np.array([0, 1, 2, 1]), "p": np.zeros((4, 2), dtype=np.float32)}
    close = {"label": want["label"].copy(), "p": want["p"] + np.float32(5e-6)}
    assert compare(want, close)["problems"] == []
    off = {"label": np.array([0, 1, 2, 2]), "p": want["p"] + np.float32(1e-4)}
    checked = compare(want, off)
    assert checked["problems"] == ["'label' differs on 25.00% of the rows", "'p' differs by 0.0001 > 1e-05"]
    assert checked["agreement"] == {"label": 0.75}


def test_string_labels_are_refused(registry: Registry, register: Register) -> None:
    from sklearn.linear_model import LogisticRegression

    from conveyor.errors import InvalidInput
    from tests.unit.fuse.conftest import _convert

    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 6)).astype(np.float32)
    named = _convert(LogisticRegression().fit(x, np.array(["cat", "dog", "owl"])[np.arange(60) % 3]), 6)
    refs = [register("a", data=named), register("b", data=named)]
    with pytest.raises(InvalidInput) as e:
        fuse(registry, "ens", refs, FuseOptions(ensemble="mean"))
    assert e.value.message == (
        "output 'label' is BYTES: an ensemble averages numbers and votes on integer labels only"
    )
