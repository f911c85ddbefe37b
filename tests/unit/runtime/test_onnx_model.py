"""OnnxModel: signature at load, input checks naming the input, predictions equal to bare ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conveyor.errors import InvalidInput
from conveyor.runtime import OnnxModel


@pytest.fixture(scope="module")
def logreg(logreg_onnx: Path) -> OnnxModel:
    return OnnxModel(logreg_onnx.read_bytes(), name="lr", version="2")


@pytest.fixture(scope="module")
def multi(multi_input_onnx: Path) -> OnnxModel:
    return OnnxModel(multi_input_onnx.read_bytes(), name="multi")


def test_signature_and_metadata_are_read_at_load(logreg: OnnxModel) -> None:
    assert logreg.metadata() == {
        "name": "lr",
        "versions": ["2"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        ],
        "parameters": {"execution_provider": "CPUExecutionProvider", "device": "cpu"},
    }
    assert logreg.providers == ["CPUExecutionProvider"]


def test_predict_equals_a_bare_onnxruntime_run(logreg: OnnxModel, logreg_onnx: Path) -> None:
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    want = ort.InferenceSession(str(logreg_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    got = logreg.predict({"input": x})
    np.testing.assert_array_equal(got["label"], want[0])
    np.testing.assert_allclose(got["probabilities"], want[1], rtol=1e-6)


def test_predict_honours_requested_outputs(logreg: OnnxModel) -> None:
    got = logreg.predict({"input": np.zeros((1, 4), np.float32)}, ["probabilities"])
    assert list(got) == ["probabilities"]


def test_unknown_output_is_named_with_the_available_ones(logreg: OnnxModel) -> None:
    with pytest.raises(InvalidInput, match="unknown output 'proba'; model 'lr' has 'label', 'probabilities'"):
        logreg.predict({"input": np.zeros((1, 4), np.float32)}, ["proba"])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": np.zeros((1, 3), np.float32)}, "missing input(s) 'k'"),
        (
            {"x": np.zeros((1, 3), np.float32), "k": np.zeros((1, 1), np.int64), "z": np.zeros(1)},
            "unexpected input(s) 'z'",
        ),
        (
            {"x": np.zeros((1, 3), np.float64), "k": np.zeros((1, 1), np.int64)},
            "'x': expected datatype FP32, got FP64",
        ),
        (
            {"x": np.zeros((1, 3), np.float32), "k": np.zeros((1, 1), np.int32)},
            "'k': expected datatype INT64, got INT32",
        ),
        (
            {"x": np.zeros(3, np.float32), "k": np.zeros((1, 1), np.int64)},
            "'x': expected shape [-1, 3], got [3]",
        ),
        (
            {"x": np.zeros((2, 4), np.float32), "k": np.zeros((2, 1), np.int64)},
            "'x': expected shape [-1, 3], got [2, 4]",
        ),
    ],
    ids=["missing", "unexpected", "dtype-fp64", "dtype-int32", "rank", "fixed-dim"],
)
def test_validate_names_the_input_and_expected_vs_got(
    multi: OnnxModel, inputs: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        multi.predict(inputs)
    assert message in str(info.value)


def test_inputs_sharing_a_named_dimension_must_agree(multi: OnnxModel) -> None:
    # Each input passes its own checks but their batch sizes disagree; ORT would fail inside the graph.
    with pytest.raises(
        InvalidInput, match="inputs must agree on dimension 'batch': 'x' dim 0 = 2, 'k' dim 0 = 3"
    ):
        multi.predict({"x": np.zeros((2, 3), np.float32), "k": np.zeros((3, 1), np.int64)})


def test_bytes_inputs_reach_onnxruntime_as_text(typed_onnx: Path) -> None:
    model = OnnxModel(typed_onnx.read_bytes(), name="typed")
    got = model.predict(
        {
            "text": np.array([b"caf\xc3\xa9", b""], dtype=object),
            "flag": np.array([True, False]),
            "half": np.array([[0.5, 1.0]], np.float16),
        }
    )
    assert got["text_out"].tolist() == ["café", ""]
    assert got["not_flag"].tolist() == [False, True]
    assert got["half_twice"].dtype == np.float16
    with pytest.raises(InvalidInput, match="'text': BYTES elements must be UTF-8"):
        model.predict(
            {
                "text": np.array([b"\xff"], dtype=object),
                "flag": np.array([True]),
                "half": np.zeros((1, 2), np.float16),
            }
        )


def test_unloadable_bytes_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="model 'junk' cannot be loaded"):
        OnnxModel(b"not an onnx model", name="junk")


def test_a_gpu_device_this_machine_lacks_is_refused_at_load(logreg_onnx: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(InvalidInput, match="CUDAExecutionProvider"):
        OnnxModel(logreg_onnx.read_bytes(), name="lr", device="cuda")


def test_auto_is_the_cpu_without_a_gpu_and_says_so_in_metadata(logreg_onnx: Path) -> None:
    model = OnnxModel(logreg_onnx.read_bytes(), name="lr", device="auto")
    if model.device.is_gpu:
        pytest.skip("this machine has a GPU")
    assert model.metadata()["parameters"] == {"execution_provider": "CPUExecutionProvider", "device": "cpu"}


def test_the_io_binding_run_answers_what_a_plain_run_answers(logreg_onnx: Path) -> None:
    bound = OnnxModel(logreg_onnx.read_bytes(), name="lr", io_binding=True)
    plain = OnnxModel(logreg_onnx.read_bytes(), name="lr")
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    got, want = bound.predict({"input": x}), plain.predict({"input": x})
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    one = bound.predict({"input": x}, ["probabilities"])
    np.testing.assert_array_equal(one["probabilities"], want["probabilities"])
