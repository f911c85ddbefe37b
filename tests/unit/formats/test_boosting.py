"""XGBoost and LightGBM import: estimators, pipelines ending in one, the frameworks' own model files."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import make_classification, make_regression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats import detect, import_model
from conveyor.formats.parity import run_onnx

Arrays = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
# one thread: XGBoost and LightGBM each bring their own OpenMP runtime, and on a 2-core machine the threads
# one leaves spinning after its work slow the other's training by seconds
SMALL: dict[str, Any] = {"n_estimators": 5, "max_depth": 3, "n_jobs": 1}


@pytest.fixture(scope="module")
def classes() -> Arrays:
    x, y = make_classification(n_samples=80, n_features=5, n_informative=3, n_classes=3, random_state=0)
    return x, y


@pytest.fixture(scope="module")
def values() -> Arrays:
    x, y = make_regression(n_samples=80, n_features=5, random_state=0)
    return x, y


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, classes: Arrays, values: Arrays) -> dict[str, Path]:
    """Models saved as people save them: XGBoost JSON and UBJSON, LightGBM text; binary and regression."""
    d = tmp_path_factory.mktemp("boosting")
    x, y = classes
    xgb.XGBClassifier(**SMALL).fit(x, y).save_model(d / "multi.json")
    xgb.XGBRegressor(**SMALL).fit(*values).save_model(d / "reg.ubj")
    xgb.XGBClassifier(**SMALL).fit(x, y == 0).get_booster().save_model(d / "binary.json")
    lgb.LGBMClassifier(**SMALL, verbose=-1).fit(x, y).booster_.save_model(d / "multi.txt")
    lgb.LGBMClassifier(**SMALL, verbose=-1).fit(x, y == 0).booster_.save_model(d / "binary.txt")
    lgb.LGBMRegressor(**SMALL, verbose=-1).fit(*values).booster_.save_model(d / "reg.txt")
    return {p.name: p for p in d.iterdir()}


def _signature(result: Any) -> dict[str, Any]:
    return result.signature.to_dict()  # type: ignore[no-any-return]


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_classifier_converts_with_parity_and_probabilities_signature(library: str, classes: Arrays) -> None:
    x, y = classes
    model = xgb.XGBClassifier(**SMALL) if library == "xgboost" else lgb.LGBMClassifier(**SMALL, verbose=-1)
    result = import_model(model.fit(x, y), sample=x)
    assert result.framework == library
    assert result.source == f"{library} {type(model).__name__}"
    assert _signature(result) == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 5]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        ],
    }
    assert result.parity is not None and result.parity["checked"] is True
    assert result.parity["max_abs_diff"] <= 1e-4 and result.parity["samples"] == 80
    out = run_onnx(result.onnx_bytes, x)
    np.testing.assert_array_equal(out["label"], model.predict(x))


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_regressor_converts_with_parity(library: str, values: Arrays) -> None:
    x, y = values
    model = xgb.XGBRegressor(**SMALL) if library == "xgboost" else lgb.LGBMRegressor(**SMALL, verbose=-1)
    result = import_model(model.fit(x, y), sample=x)
    assert result.framework == library
    assert _signature(result)["outputs"] == [{"name": "variable", "datatype": "FP32", "shape": [-1, 1]}]
    assert result.parity is not None and result.parity["max_abs_diff"] <= 1e-4


def test_xgboost_as_a_pipelines_last_step_converts_exactly(classes: Arrays) -> None:
    # XGBoost splits on float32 values of the training data: scaled in float32 by the graph, a training row
    # lands on the other side of a split, so the exact (float64 before the trees) conversion is what passes
    x, y = classes
    pipeline = make_pipeline(StandardScaler(), xgb.XGBClassifier(**SMALL)).fit(x, y)
    result = import_model(pipeline, sample=x)
    assert result.framework == "sklearn"
    assert result.source == "sklearn Pipeline(StandardScaler, XGBClassifier)"
    assert result.parity is not None and result.parity["max_abs_diff"] <= 1e-4
    assert result.parity["label_mismatches"] == 0
    assert result.parity["conversion"].startswith("exact")
    out = run_onnx(result.onnx_bytes, x)
    np.testing.assert_allclose(out["probabilities"], pipeline.predict_proba(x), atol=1e-5)


def test_lightgbm_as_a_pipelines_last_step_converts(values: Arrays) -> None:
    x, y = values
    pipeline = make_pipeline(StandardScaler(), lgb.LGBMRegressor(**SMALL, verbose=-1)).fit(x, y)
    result = import_model(pipeline, sample=x, framework="sklearn")
    assert result.source == "sklearn Pipeline(StandardScaler, LGBMRegressor)"
    assert result.parity is not None and result.parity["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize(
    ("name", "library", "outputs"),
    [
        ("multi.json", "xgboost", {"label": [-1], "probabilities": [-1, 3]}),
        ("binary.json", "xgboost", {"label": [-1], "probabilities": [-1, 2]}),
        ("reg.ubj", "xgboost", {"variable": [-1, 1]}),
        ("multi.txt", "lightgbm", {"label": [-1], "probabilities": [-1, 3]}),
        ("binary.txt", "lightgbm", {"label": [-1], "probabilities": [-1, 2]}),
        ("reg.txt", "lightgbm", {"variable": [-1, 1]}),
    ],
)
def test_native_model_files_convert_with_parity(
    name: str, library: str, outputs: dict[str, list[int]], files: dict[str, Path], classes: Arrays
) -> None:
    x = classes[0]
    result = import_model(files[name], sample=x)
    assert result.framework == library
    assert result.source.startswith(f"{library} Booster (") and result.source.endswith(f" from {name}")
    assert {o["name"]: o["shape"] for o in _signature(result)["outputs"]} == outputs
    assert result.parity is not None and result.parity["checked"] is True
    assert result.parity["max_abs_diff"] <= 1e-4 and result.parity["samples"] == 80
    if "label" in outputs:
        assert result.parity["label_mismatches"] == 0
        # the label is the most probable class, one per row (LightGBM's converter says shape [1])
        out = run_onnx(result.onnx_bytes, x)
        np.testing.assert_array_equal(out["label"], out["probabilities"].argmax(axis=1))


def test_an_xgboost_random_forest_is_refused_before_conversion(tmp_path: Path, classes: Arrays) -> None:
    # onnxmltools averages none of the parallel trees: parity finds it, but only when a sample is given
    xgb.XGBRFClassifier(**SMALL).fit(*classes).save_model(tmp_path / "forest.json")
    with pytest.raises(ConversionError, match=r"is a random forest \(5 parallel trees\), which onnxmltools"):
        import_model(tmp_path / "forest.json")


def test_a_booster_file_without_a_sample_registers_unchecked_and_says_why(files: dict[str, Path]) -> None:
    result = import_model(files["multi.txt"])
    assert result.parity == {
        "checked": False,
        "reason": "no sample was given and a LightGBM Booster records no statistics to derive inputs "
        "from (give --sample to check the conversion)",
    }


def test_the_same_booster_converts_to_the_same_bytes(files: dict[str, Path]) -> None:
    first = import_model(files["multi.json"]).onnx_bytes
    assert import_model(files["multi.json"]).onnx_bytes == first


def test_file_kinds_are_read_from_the_content(files: dict[str, Path], tmp_path: Path) -> None:
    assert detect.file_kind(files["multi.json"]) == detect.XGBOOST_MODEL
    assert detect.file_kind(files["reg.ubj"]) == detect.XGBOOST_MODEL
    assert detect.file_kind(files["reg.txt"]) == detect.LIGHTGBM_MODEL
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(files["reg.txt"].read_bytes())
    assert detect.file_kind(renamed) == detect.LIGHTGBM_MODEL
    other = tmp_path / "config.json"
    other.write_text('{"layers": 3}')
    with pytest.raises(ConversionError, match=r"cannot tell what model config\.json holds; supported:"):
        detect.file_kind(other)


def test_a_file_of_one_library_named_as_the_other_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(ConversionError, match=r"^multi\.txt holds a lightgbm model, not xgboost$"):
        import_model(files["multi.txt"], framework="xgboost")


def test_an_estimator_of_one_library_named_as_the_other_is_refused(values: Arrays) -> None:
    model = xgb.XGBRegressor(**SMALL).fit(*values)
    with pytest.raises(ConversionError, match="framework 'lightgbm' needs a LightGBM booster or estimator"):
        import_model(model, framework="lightgbm")


def test_a_truncated_model_file_is_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_bytes(files["multi.json"].read_bytes()[:200])
    with pytest.raises(ConversionError, match=r"^cannot load broken\.json with XGBoost: ") as e:
        import_model(broken)
    assert "\n" not in e.value.message


def test_a_sample_of_the_wrong_width_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(InvalidInput, match="the sample has 2 columns; XGBoost Booster expects 5 features"):
        import_model(files["multi.json"], sample=np.zeros((3, 2)))


def test_a_pickled_estimator_registers_with_trust(tmp_path: Path, values: Arrays) -> None:
    x, y = values
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(lgb.LGBMRegressor(**SMALL, verbose=-1).fit(x, y)))
    with pytest.raises(ConversionError, match="pass --trust-pickle"):
        import_model(path, sample=x)
    result = import_model(path, sample=x, trust_pickle=True)
    assert result.framework == "lightgbm" and result.source == "lightgbm LGBMRegressor from model.pkl"


def test_a_skops_file_names_the_library_types_it_needs_trusted(tmp_path: Path, values: Arrays) -> None:
    import skops.io as sio

    x, y = values
    path = tmp_path / "model.skops"
    sio.dump(xgb.XGBRegressor(**SMALL).fit(x, y), path)
    with pytest.raises(ConversionError, match=r"xgboost\.sklearn\.XGBRegressor.*pass --trust-pickle"):
        import_model(path)
    result = import_model(path, sample=x, trust_pickle=True)
    assert result.framework == "xgboost" and result.parity is not None and result.parity["checked"] is True


@pytest.mark.parametrize("missing", ["xgboost", "onnxmltools"])
def test_without_the_extra_a_model_file_is_one_line_naming_it(
    missing: str, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # what `import` sees when the package is not installed
    with pytest.raises(ConversionError) as e:
        import_model(files["multi.json"])
    assert e.value.message == "XGBoost support needs the boosting extra: pip install 'conveyor[boosting]'"
