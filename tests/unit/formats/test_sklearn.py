from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats import ImportResult, TensorSpec, import_model
from conveyor.formats.parity import run_onnx


class Identity(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A custom type skops does not know: loading it runs this module's code."""

    def fit(self, x: Any, y: Any = None) -> Identity:
        return self

    def transform(self, x: Any) -> Any:
        return x


def _labels_and_probabilities(result: ImportResult, n_classes: int) -> None:
    assert result.framework == "sklearn"
    assert result.signature.inputs == (TensorSpec("input", "FP32", (-1, 6)),)
    assert result.signature.outputs == (
        TensorSpec("label", "INT64", (-1,)),
        TensorSpec("probabilities", "FP32", (-1, n_classes)),
    )


def test_pipeline_converts_to_plain_tensors_with_parity(pipeline: Any, xy: Any) -> None:
    x, _ = xy
    result = import_model(pipeline, sample=x)
    _labels_and_probabilities(result, 3)
    assert result.source == "sklearn Pipeline(StandardScaler, LogisticRegression)"
    assert result.parity is not None
    assert result.parity["samples"] == 120
    assert result.parity["label_mismatches"] == 0
    assert result.parity["max_abs_diff"] <= 1e-4
    assert set(result.parity["per_output"]) == {"probabilities"}
    outputs = run_onnx(result.onnx_bytes, x[:7])
    np.testing.assert_array_equal(outputs["label"], pipeline.predict(x[:7].astype(np.float32)))


def test_random_forest_without_sample_is_checked_on_its_thresholds(forest: Any) -> None:
    result = import_model(forest, framework="sklearn")
    _labels_and_probabilities(result, 3)
    assert result.parity is not None and result.parity["checked"] and result.parity["inputs"] == "derived"
    onnx.checker.check_model(onnx.load_model_from_string(result.onnx_bytes))


def test_regressor_outputs_one_dynamic_batch_column(regressor: Any) -> None:
    model, x = regressor
    result = import_model(model, sample=x)
    assert result.signature.inputs == (TensorSpec("input", "FP32", (-1, 5)),)
    assert result.signature.outputs == (TensorSpec("variable", "FP32", (-1, 1)),)
    assert result.parity is not None and result.parity["max_abs_diff"] <= 1e-4
    assert "label_mismatches" not in result.parity


def test_classifier_without_zipmap_option_still_converts(xy: Any) -> None:
    x, y = xy
    result = import_model(LinearSVC().fit(x, y), sample=x)
    _labels_and_probabilities(result, 3)


def test_disagreement_beyond_tolerance_is_refused_with_the_numbers(pipeline: Any, xy: Any) -> None:
    x, _ = xy
    # float64 sklearn vs float32 ONNX differ by ~1e-7: a zero tolerance must refuse and say by how much
    with pytest.raises(ConversionError) as err:
        import_model(pipeline, sample=x, tolerance=0.0)
    message = str(err.value)
    assert message.startswith("conversion disagrees with the original: max |diff| ")
    assert message.endswith("> tolerance 0 (--tolerance) on 120 samples (output 'probabilities')")
    assert err.value.details["max_abs_diff"] > 0


def test_sample_with_wrong_width_is_invalid_input(pipeline: Any, xy: Any) -> None:
    x, _ = xy
    with pytest.raises(InvalidInput, match=r"the sample has 4 columns; .* expects 6 features"):
        import_model(pipeline, sample=x[:, :4])


def test_unfitted_estimator_is_refused() -> None:
    with pytest.raises(ConversionError, match="LogisticRegression is not fitted"):
        import_model(LogisticRegression())


def test_opset_is_passed_to_the_converter(forest: Any) -> None:
    result = import_model(forest, opset=15)
    model = onnx.load_model_from_string(result.onnx_bytes)
    assert {o.domain: o.version for o in model.opset_import}[""] == 15


def test_skops_file_round_trip(pipeline: Any, xy: Any, tmp_path: Path) -> None:
    x, _ = xy
    path = tmp_path / "model.skops"
    sio.dump(pipeline, path)
    np.save(tmp_path / "sample.npy", x[:20])
    result = import_model(path, sample=tmp_path / "sample.npy")
    _labels_and_probabilities(result, 3)
    assert result.source == "sklearn Pipeline(StandardScaler, LogisticRegression) from model.skops"
    assert result.parity is not None and result.parity["samples"] == 20


def test_skops_library_types_are_trusted(forest: Any, tmp_path: Path) -> None:
    # skops reports sklearn.tree._tree.Tree as untrusted; it is part of scikit-learn, so it loads
    path = tmp_path / "forest.skops"
    sio.dump(forest, path)
    assert import_model(path).framework == "sklearn"


def test_skops_foreign_types_need_trust(xy: Any, tmp_path: Path) -> None:
    x, y = xy
    path = tmp_path / "custom.skops"
    sio.dump(make_pipeline(Identity(), LogisticRegression(max_iter=500)).fit(x, y), path)
    with pytest.raises(
        ConversionError, match=r"outside scikit-learn.*test_sklearn\.Identity.*--trust-pickle"
    ):
        import_model(path)
    # trusted, it loads; Identity records no n_features_in_, so the sample must give the width
    with pytest.raises(ConversionError, match=r"does not record its number of features.*give a sample"):
        import_model(path, trust_pickle=True)
    # with the width known, skl2onnx says it has no converter for the custom step
    with pytest.raises(
        ConversionError, match=r"skl2onnx cannot convert Pipeline\(Identity, LogisticRegression\)"
    ):
        import_model(path, trust_pickle=True, sample=x)


def test_pickle_is_refused_without_trust(pipeline: Any, tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    joblib.dump(pipeline, path)
    with pytest.raises(
        ConversionError, match="unpickling runs arbitrary code; pass --trust-pickle if you trust this file"
    ):
        import_model(path)


@pytest.mark.parametrize("name", ["model.pkl", "model.joblib"])
def test_pickle_is_accepted_with_trust(pipeline: Any, xy: Any, tmp_path: Path, name: str) -> None:
    x, _ = xy
    path = tmp_path / name
    joblib.dump(pipeline, path, compress=3 if name.endswith("joblib") else 0)
    result = import_model(path, trust_pickle=True, sample=x)
    _labels_and_probabilities(result, 3)
    assert result.source.endswith(f"from {name}")


def test_csv_sample_with_header_drives_parity(regressor: Any, tmp_path: Path) -> None:
    model, x = regressor
    rows = "\n".join(",".join(repr(float(v)) for v in row) for row in x[:15])
    (tmp_path / "sample.csv").write_text("a,b,c,d,e\n" + rows + "\n")
    result = import_model(model, sample=str(tmp_path / "sample.csv"))
    assert result.parity is not None and result.parity["samples"] == 15


def test_a_flipped_label_is_refused_unless_the_original_was_tied(pipeline: Any, xy: Any) -> None:
    from conveyor.formats.sklearn import classifier_parity

    x = xy[0].astype(np.float32)
    outputs = run_onnx(import_model(pipeline).onnx_bytes, x)
    outputs["label"][0] = (outputs["label"][0] + 1) % 3  # as a broken converter would answer
    with pytest.raises(ConversionError, match=r"1 of 120 predicted labels differ \(output 'label'\)"):
        classifier_parity(pipeline, x, outputs, ["label", "probabilities"], 1e-4)
    # with a tolerance as wide as the probabilities, every row counts as a tie: the flip is excused
    parity = classifier_parity(pipeline, x, outputs, ["label", "probabilities"], 1.0)
    assert parity["label_mismatches"] == 1 and parity["label_ties"] == 1
