"""Comparing stable's and the candidate's answers: agreement, values beyond the tolerance, labels (integer
outputs and the argmax of class scores), answers that cannot be compared, JSON and binary bodies alike."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conveyor.gateway.compare import (
    AGREE,
    FAILED,
    LABELS_DIFFER,
    VALUES_DIFFER,
    compare_answers,
)
from conveyor.protocol.codec import encode_infer_response
from conveyor.protocol.datatypes import v2_datatype
from conveyor.protocol.service import EncodedResponse
from conveyor.protocol.types import InferResponse, ResponseOutput

PROBA = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=np.float32)
LABEL = np.array([0, 2], dtype=np.int64)


def _answer(binary: bool = False, **outputs: np.ndarray[Any, Any]) -> EncodedResponse:
    outs = [ResponseOutput(n, v2_datatype(a.dtype), a.shape, a) for n, a in outputs.items()]
    body, json_length = encode_infer_response(InferResponse("lr", outs, "1", "r-1"), binary_outputs=binary)
    return EncodedResponse(body, json_length, "r-1", "1")


def _stable(binary: bool = False) -> EncodedResponse:
    return _answer(binary, label=LABEL, probabilities=PROBA)


@pytest.mark.parametrize(("a_binary", "b_binary"), [(False, False), (True, True), (False, True)])
def test_the_same_answer_agrees_with_no_difference_json_or_binary(a_binary: bool, b_binary: bool) -> None:
    result = compare_answers(_stable(a_binary), _stable(b_binary), 1e-5)
    assert (result.result, result.max_abs_difference) == (AGREE, 0.0)


def test_float_differences_within_the_tolerance_agree() -> None:
    close = _answer(label=LABEL, probabilities=PROBA + np.float32(2e-6))
    result = compare_answers(_stable(), close, 1e-5)
    assert result.result == AGREE
    assert result.max_abs_difference == pytest.approx(2e-6, rel=0.1)


def test_values_beyond_the_tolerance_differ_with_the_largest_difference() -> None:
    shifted = PROBA.copy()
    shifted[0] = [0.6, 0.3, 0.1]  # the same argmax: labels agree, values do not
    result = compare_answers(_stable(), _answer(label=LABEL, probabilities=shifted), 1e-5)
    assert result.result == VALUES_DIFFER
    assert result.max_abs_difference == pytest.approx(0.1, rel=1e-5)


def test_labels_differ_when_an_integer_output_differs() -> None:
    result = compare_answers(_stable(), _answer(label=np.array([0, 1]), probabilities=PROBA), 1e-5)
    assert result.result == LABELS_DIFFER and result.max_abs_difference == 0.0


def test_labels_differ_when_the_argmax_of_class_scores_differs() -> None:
    flipped = PROBA[:, ::-1].copy()
    result = compare_answers(_answer(probabilities=PROBA), _answer(probabilities=flipped), 0.5)
    assert result.result == LABELS_DIFFER  # within the tolerance, but another class wins


def test_a_regression_output_has_no_labels() -> None:
    y = np.array([1.0, 5.0, 2.0], dtype=np.float32)  # [n]: an argmax over rows would mean nothing
    result = compare_answers(_answer(y=y), _answer(y=np.array([5.0, 1.0, 2.0], dtype=np.float32)), 1e-5)
    assert (result.result, result.max_abs_difference) == (VALUES_DIFFER, 4.0)


def test_bool_and_bytes_outputs_are_labels() -> None:
    flags, names = np.array([True, False]), np.array([b"cat", b"dog"], dtype=object)
    assert compare_answers(_answer(f=flags, n=names), _answer(f=flags, n=names), 0).result == AGREE
    other = np.array([b"cat", b"cow"], dtype=object)
    assert compare_answers(_answer(f=flags, n=names), _answer(f=flags, n=other), 0).result == LABELS_DIFFER
    assert compare_answers(_answer(f=flags), _answer(f=~flags), 0).result == LABELS_DIFFER


def test_nan_agrees_only_with_nan() -> None:
    y = np.array([np.nan, 1.0], dtype=np.float32)  # binary: JSON has no NaN
    assert compare_answers(_answer(True, y=y), _answer(True, y=y.copy()), 0).result == AGREE
    other = np.array([0.5, 1.0], dtype=np.float32)
    result = compare_answers(_answer(True, y=y), _answer(True, y=other), 1.0)
    assert result.result == VALUES_DIFFER and result.max_abs_difference == float("inf")


@pytest.mark.parametrize(
    "other",
    [
        {"label": LABEL},  # an output missing
        {"label": LABEL, "probabilities": PROBA, "extra": LABEL},  # one more
        {"label": LABEL, "probabilities": PROBA[:1]},  # another shape
        {"label": LABEL.astype(np.float32), "probabilities": PROBA},  # another kind
    ],
)
def test_answers_of_another_shape_differ(other: dict[str, np.ndarray[Any, Any]]) -> None:
    assert compare_answers(_stable(), _answer(False, **other), 1e-5).result == VALUES_DIFFER


def test_an_answer_that_is_not_an_inference_response_fails_the_comparison() -> None:
    error = EncodedResponse(b'{"error": "boom"}', None, "r-1", "2")
    assert compare_answers(_stable(), error, 1e-5).result == FAILED
    assert compare_answers(EncodedResponse(b"{not json", None, "r", "1"), _stable(), 1e-5).result == FAILED
