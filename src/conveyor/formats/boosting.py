"""XGBoost and LightGBM → ONNX with onnxmltools, checked against the original like scikit-learn models.

Their scikit-learn estimators (``XGBClassifier``, ``LGBMRegressor``...), alone or as the last step of a
Pipeline, go through the scikit-learn importer once onnxmltools' converters are registered with skl2onnx
(``update_registered_converter``, the documented way). Their boosters, which is what the frameworks' own
model files hold (XGBoost ``.json`` / ``.ubj``, LightGBM ``.txt``), are converted by onnxmltools directly.
The two libraries differ in a few calls only, so they share this module.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.parity import first_line, max_abs_diff, not_checked, report, run_onnx
from conveyor.formats.result import ImportResult, signature_of
from conveyor.formats.samples import Array, Sample
from conveyor.formats.sklearn import FLOAT32, INPUT_NAME, classifier_parity, feature_rows, import_sklearn
from conveyor.formats.sklearn_exact import canonical_opsets

XGBOOST, LIGHTGBM = "xgboost", "lightgbm"
LIBRARIES = (XGBOOST, LIGHTGBM)
TITLES = {XGBOOST: "XGBoost", LIGHTGBM: "LightGBM"}
BOOSTING_EXTRA = "{title} support needs the boosting extra: pip install 'conveyor[boosting]'"
# skl2onnx 1.20 writes at most ai.onnx.ml 3 and refuses a graph above it; onnxmltools' converters name no
# op version, so under a plain target opset they would take ai.onnx.ml 5's tree operators
ML_OPSET = 3
# the estimators registered with skl2onnx; not XGBRF*: onnxmltools converts their forests wrongly (parity
# found a difference of 0.6 in probabilities), so they stay unknown to skl2onnx and are refused
_ESTIMATORS = {
    XGBOOST: ("XGBClassifier", "XGBRegressor"),
    LIGHTGBM: ("LGBMClassifier", "LGBMRegressor"),
}
_CONVERTERS = {
    XGBOOST: ("onnxmltools.convert.xgboost.operator_converters.XGBoost", "convert_xgboost"),
    LIGHTGBM: ("onnxmltools.convert.lightgbm.operator_converters.LightGbm", "convert_lightgbm"),
}
_CLASSIFIER_OPTIONS = {"nocl": [True, False], "zipmap": [True, False, "columns"]}


def library_of(obj: object) -> str | None:
    """``xgboost`` or ``lightgbm`` for a booster or estimator of theirs (from its type: nothing imported)."""
    root = type(obj).__module__.partition(".")[0]
    return root if root in LIBRARIES else None


def is_booster(obj: object) -> bool:
    return library_of(obj) is not None and type(obj).__name__ == "Booster"


def libraries_in(model: object) -> list[str]:
    """The boosting libraries whose estimators a model is or holds (a Pipeline's steps, nested)."""
    found = {library_of(model)}
    for _, step in getattr(model, "steps", None) or []:
        found.update(libraries_in(step))
    return sorted(lib for lib in found if lib is not None)


def require(library: str) -> Any:
    """The library's module, after checking onnxmltools is there too; a one-line error naming the extra."""
    try:
        importlib.import_module("onnxmltools")
        return importlib.import_module(library)
    except ImportError:
        raise ConversionError(BOOSTING_EXTRA.format(title=TITLES[library])) from None


def load_booster(path: Path, library: str) -> Any:
    """A booster from the framework's own model file: XGBoost ``.json`` / ``.ubj``, LightGBM ``.txt``."""
    module = require(library)
    try:
        return module.Booster(model_file=str(path))
    except Exception as e:  # XGBoostError / LightGBMError for a truncated or foreign file
        raise ConversionError(f"cannot load {path.name} with {TITLES[library]}: {first_line(e)}") from e


def import_boosting(
    model: Any, *, sample: Sample | None, tolerance: float, opset: int | None, origin: str = ""
) -> ImportResult:
    """A booster, or a scikit-learn estimator that is or holds XGBoost / LightGBM estimators."""
    if is_booster(model):
        return _import_booster(model, sample, tolerance, opset, origin)
    for library in libraries_in(model):
        register_converters(library)
    result = import_sklearn(model, sample=sample, tolerance=tolerance, opset=opset, origin=origin)
    own = library_of(model)
    if own is None:  # a Pipeline ending in one: a scikit-learn model
        return result
    source = f"{own} {result.source.removeprefix('sklearn ')}"
    return dataclasses.replace(result, framework=own, source=source)


@functools.cache
def register_converters(library: str) -> None:
    """Teach skl2onnx the library's estimators, so they convert alone and inside a Pipeline."""
    module = require(library)
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    converter_module, converter_name = _CONVERTERS[library]
    converter = _capped_ml_opset(getattr(importlib.import_module(converter_module), converter_name))
    for class_name in _ESTIMATORS[library]:
        cls = getattr(module, class_name)
        classifier = "Classifier" in class_name
        update_registered_converter(
            cls,
            f"{TITLES[library]}{class_name}",
            calculate_linear_classifier_output_shapes
            if classifier
            else calculate_linear_regressor_output_shapes,
            converter,
            options=_CLASSIFIER_OPTIONS if classifier else None,
        )


def _capped_ml_opset(convert: Callable[..., None]) -> Callable[..., None]:
    def converter(scope: Any, operator: Any, container: Any) -> None:
        target = container.target_opset_all  # a dict by domain; a domain missing means its newest opset
        ml = min(target.get("ai.onnx.ml") or ML_OPSET, ML_OPSET)
        container.target_opset_all = {**target, "ai.onnx.ml": ml}
        try:
            convert(scope, operator, container)
        finally:
            container.target_opset_all = target

    return converter


def _import_booster(
    booster: Any, sample: Sample | None, tolerance: float, opset: int | None, origin: str
) -> ImportResult:
    library = str(library_of(booster))
    desc = f"{TITLES[library]} Booster"
    n_features = int(booster.num_features() if library == XGBOOST else booster.num_feature())
    if library == XGBOOST:
        forest = _config(booster)["gradient_booster"].get("gbtree_model_param", {}).get("num_parallel_tree")
        if forest not in (None, "1"):  # parity would find it, but only when a sample is given
            raise ConversionError(
                f"{desc} is a random forest ({forest} parallel trees), which onnxmltools converts wrongly; "
                "train with num_parallel_tree=1 (XGBClassifier / XGBRegressor) to register it"
            )
    x = feature_rows(sample)
    if x is not None and x.shape[1] != n_features:
        raise InvalidInput(f"the sample has {x.shape[1]} columns; {desc} expects {n_features} features")
    data = _convert_booster(booster, library, n_features, opset, desc)
    if x is None:
        parity = not_checked(
            f"no sample was given and a {desc} records no statistics to derive inputs from "
            "(give --sample to check the conversion)"
        )
    else:
        parity = {**_booster_parity(booster, library, data, x, tolerance), "inputs": "sample"}
        parity.update(conversion=FLOAT32, samples=int(x.shape[0]))
    return ImportResult(
        onnx_bytes=data,
        framework=library,
        signature=signature_of(data, dynamic_batch=True),
        parity=parity,
        source=f"{library} Booster ({_objective(booster, library)}){origin}",
    )


def _convert_booster(booster: Any, library: str, n_features: int, opset: int | None, desc: str) -> bytes:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    initial_types = [(INPUT_NAME, FloatTensorType([None, n_features]))]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if library == XGBOOST:
                onx = onnxmltools.convert_xgboost(
                    booster, name=desc, initial_types=initial_types, target_opset=opset
                )
            else:
                onx = onnxmltools.convert_lightgbm(
                    booster, name=desc, initial_types=initial_types, target_opset=opset, zipmap=False
                )
    except Exception as e:  # onnxmltools raises RuntimeError / NotImplementedError for objectives it lacks
        raise ConversionError(f"onnxmltools cannot convert the {desc}: {first_line(e)}") from e
    # onnxmltools gives LightGBM's label a fixed shape [1]; every output is one row per input row
    for value in [*onx.graph.input, *onx.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "N"
    canonical_opsets(onx)
    return bytes(onx.SerializeToString())


def _booster_parity(booster: Any, library: str, data: bytes, x: Array, tolerance: float) -> dict[str, Any]:
    outputs = run_onnx(data, x)
    names = list(outputs)
    try:
        expected = _predict(booster, library, x)
    except Exception as e:  # the original model failing on the sample is the sample's fault
        raise InvalidInput(f"the original model fails on the sample: {first_line(e)}") from e
    if len(names) == 1:  # a regressor: one value per row
        per_output = {names[0]: max_abs_diff(expected, outputs[names[0]], names[0])}
        return report(per_output, tolerance, int(x.shape[0]))
    return classifier_parity(_Probabilities(expected), x, outputs, names, tolerance)


def _predict(booster: Any, library: str, x: Array) -> Array:
    """The booster's answer: class probabilities (n x classes) for a classifier, values for a regressor."""
    if library == XGBOOST:
        import xgboost

        matrix = xgboost.DMatrix(x)
        if _objective(booster, library) == "multi:softmax":  # predicts labels: take its probabilities
            margin = np.asarray(booster.predict(matrix, output_margin=True), dtype=np.float64)
            e = np.exp(margin - margin.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True))
        out = np.asarray(booster.predict(matrix), dtype=np.float64)
    else:
        out = np.asarray(booster.predict(x), dtype=np.float64)
    if out.ndim == 1 and _is_binary(booster, library):
        return np.column_stack([1.0 - out, out])
    return out


def _config(booster: Any) -> dict[str, Any]:
    """An XGBoost booster's learner configuration."""
    return json.loads(booster.save_config())["learner"]  # type: ignore[no-any-return]


def _objective(booster: Any, library: str) -> str:
    if library == XGBOOST:
        return str(_config(booster)["objective"]["name"])
    return str(booster.dump_model(num_iteration=0).get("objective", "unknown")).split(" ")[0]


def _is_binary(booster: Any, library: str) -> bool:
    objective = _objective(booster, library)
    return objective.startswith("binary") if library == XGBOOST else objective in ("binary", "cross_entropy")


class _Probabilities:
    """What the classifier parity check asks of a model, from a booster's probabilities on the sample."""

    def __init__(self, probabilities: Array) -> None:
        self._p = probabilities

    def predict_proba(self, x: Array) -> Array:
        return np.asarray(self._p)

    def predict(self, x: Array) -> Array:
        return np.asarray(self._p.argmax(axis=1))
