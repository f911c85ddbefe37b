"""scikit-learn estimators and pipelines → ONNX with skl2onnx (ZipMap off: plain tensors), parity checked."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.derived import derived_inputs
from conveyor.formats.parity import first_line, max_abs_diff, not_checked, report, run_onnx
from conveyor.formats.result import ImportResult, signature_of
from conveyor.formats.samples import Array, Sample
from conveyor.formats.sklearn_exact import canonical_opsets, convert_exact, has_trees

INPUT_NAME = "input"
FLOAT32 = "float32"
EXACT = "exact: float64, float32 tree inputs"
EXACT_FP64_INPUT = "exact: float64 with FP64 inputs, float32 tree inputs"
NOTHING_DERIVED = (
    "no sample was given and {desc} records no statistics to derive inputs from "
    "(give --sample to check the conversion)"
)
# skops reports every type outside its own allow-list; these roots are the libraries a fitted model is made of
_SAFE_ROOTS = ("sklearn", "numpy", "scipy", "builtins")


def is_estimator(obj: object) -> bool:
    from sklearn.base import BaseEstimator

    return isinstance(obj, BaseEstimator)


def describe(model: object) -> str:
    """``Pipeline(StandardScaler, LogisticRegression)`` for a pipeline, the class name otherwise."""
    steps = getattr(model, "steps", None)
    name = type(model).__name__
    if isinstance(steps, list):
        inner = [describe(step) for _, step in steps if step is not None and step != "passthrough"]
        return f"{name}({', '.join(inner)})"
    return name


def load_skops(path: Path, *, trust_pickle: bool) -> Any:
    """Load a ``.skops`` file, trusting only library types unless the caller trusts the file."""
    import skops.io as sio

    try:
        untrusted = list(sio.get_untrusted_types(file=path))
    except Exception as e:  # skops raises zipfile / json / key errors for anything that is not its format
        raise ConversionError(f"{path.name} is not a readable .skops file: {first_line(e)}") from e
    foreign = [t for t in untrusted if not _is_library_type(t)]
    if foreign and not trust_pickle:
        raise ConversionError(
            f"{path.name} holds types outside scikit-learn, numpy and scipy: {', '.join(foreign)}; "
            "loading them runs their code; pass --trust-pickle if you trust this file"
        )
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as e:
        raise ConversionError(f"cannot load {path.name} with skops: {first_line(e)}") from e


def import_sklearn(
    model: Any, *, sample: Sample | None, tolerance: float, opset: int | None, origin: str = ""
) -> ImportResult:
    """Convert a fitted estimator or pipeline and check it against the original.

    The check runs on the sample, or else on inputs derived from the fitted model (``derived_inputs``); with
    neither, the version records that parity was not checked. When the float32 conversion disagrees, the exact
    conversion (``sklearn_exact``) is tried: first keeping the FP32 input, then taking FP64 inputs when the
    sample holds values float32 cannot represent. A conversion that still disagrees is refused.
    """
    desc = describe(model)
    _check_fitted(model, desc)
    x = feature_rows(sample)
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None:
        if x is None:
            raise ConversionError(
                f"{desc} does not record its number of features (n_features_in_); give a sample to define it"
            )
        n_features = x.shape[1]
    if x is not None and x.shape[1] != n_features:
        raise InvalidInput(f"the sample has {x.shape[1]} columns; {desc} expects {n_features} features")
    inputs = "sample"
    if x is None:
        derived = derived_inputs(model, int(n_features))
        # float64 like a sample: the original is given what the served model is given, in its usual type
        x, inputs = (None if derived is None else derived.astype(np.float64)), "derived"
    data, options = _convert(model, int(n_features), opset, desc)
    if x is None:
        return _result(data, None, desc, origin, not_checked(NOTHING_DERIVED.format(desc=desc)))
    try:
        parity = _parity(model, data, x, tolerance)
        return _result(data, x, desc, origin, {**parity, "inputs": inputs, "conversion": FLOAT32})
    except InvalidInput as e:
        if inputs == "sample":
            raise
        # the original itself fails on what was derived from it: say so rather than blame a sample
        return _result(data, None, desc, origin, not_checked(f"{desc} fails on derived inputs: {e.message}"))
    except ConversionError as e:
        if not has_trees(model):
            raise
        first = e
    exact: list[bool] = [False] if np.array_equal(x.astype(np.float32), x) else [False, True]
    for fp64_input in exact:
        try:
            data = convert_exact(model, int(n_features), opset, options, fp64_input=fp64_input)
        except Exception as e:  # the exact graph is best effort: the float32 verdict stands
            raise ConversionError(f"{first.message}; the exact conversion failed: {first_line(e)}") from e
        try:
            parity = _parity(model, data, x, tolerance)
        except ConversionError as e:
            if fp64_input or len(exact) == 1:
                raise ConversionError(f"{e.message} (the exact float64 conversion too)", **e.details) from e
            continue
        conversion = EXACT_FP64_INPUT if fp64_input else EXACT
        return _result(data, x, desc, origin, {**parity, "inputs": inputs, "conversion": conversion})
    raise AssertionError("unreachable")


def graph_name(model: Any) -> str:
    """A fixed graph name: skl2onnx draws a random one, and the same model would get a new digest."""
    return f"sklearn {describe(model)}"


def _result(data: bytes, x: Array | None, desc: str, origin: str, parity: dict[str, Any]) -> ImportResult:
    if x is not None:
        parity["samples"] = int(x.shape[0])
    return ImportResult(
        onnx_bytes=data,
        framework="sklearn",
        signature=signature_of(data, dynamic_batch=True),
        parity=parity,
        source=f"sklearn {desc}{origin}",
    )


def _convert(model: Any, n_features: int, opset: int | None, desc: str) -> tuple[bytes, Any]:
    """The float32 graph and the converter options that made it (the exact conversion reuses them)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    initial_types = [(INPUT_NAME, FloatTensorType([None, n_features]))]
    # ZipMap turns probabilities into a list of dicts the serving path cannot carry; not every
    # classifier converter has the option (LinearSVC has none), so ask and retry without.
    option_sets: list[dict[int, dict[str, Any]] | None] = [None]
    if is_classifier(model):
        option_sets.insert(0, {id(model): {"zipmap": False}})
    for i, options in enumerate(option_sets):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                onx = convert_sklearn(
                    model,
                    initial_types=initial_types,
                    options=options,
                    target_opset=opset,
                    name=graph_name(model),
                )
            canonical_opsets(onx)
            return bytes(onx.SerializeToString()), options
        except Exception as e:  # skl2onnx raises RuntimeError, NameError, TypeError... for what it cannot do
            if options is not None and "zipmap" in str(e) and i + 1 < len(option_sets):
                continue
            raise ConversionError(f"skl2onnx cannot convert {desc}: {first_line(e)}") from e
    raise AssertionError("unreachable")


def _parity(model: Any, data: bytes, x: Array, tolerance: float) -> dict[str, Any]:
    from sklearn.base import is_classifier, is_regressor

    outputs = run_onnx(data, x)
    names = list(outputs)
    n = int(x.shape[0])
    try:
        if is_classifier(model):
            return classifier_parity(model, x, outputs, names, tolerance)
        if is_regressor(model):
            expected = model.predict(x)
            return report({names[0]: max_abs_diff(expected, outputs[names[0]], names[0])}, tolerance, n)
        if hasattr(model, "transform") and len(names) == 1:
            expected = model.transform(x)
            return report({names[0]: max_abs_diff(expected, outputs[names[0]], names[0])}, tolerance, n)
    except ConversionError:
        raise
    except Exception as e:  # the original model failing on the sample is the sample's fault
        raise InvalidInput(f"the original model fails on the sample: {first_line(e)}") from e
    # clusterers and other kinds: no single reference output, the conversion at least runs
    return {"runs": True, "samples": n}


def classifier_parity(
    model: Any, x: Array, outputs: dict[str, Array], names: list[str], tolerance: float
) -> dict[str, Any]:
    """Parity of a converted classifier (labels, then scores) with ``model``'s predict/predict_proba on
    ``x``; shared with the boosting importer, whose boosters answer through the same two outputs."""
    label_name, scores_name = names[0], names[1] if len(names) > 1 else None
    n = int(x.shape[0])
    per_output: dict[str, float] = {}
    margin: Array | None = None
    if scores_name is not None:
        if hasattr(model, "predict_proba"):
            expected = np.asarray(model.predict_proba(x), dtype=np.float64)
        else:  # skl2onnx emits decision_function scores for classifiers without probabilities
            expected = np.asarray(model.decision_function(x), dtype=np.float64)
        per_output[scores_name] = max_abs_diff(expected, outputs[scores_name], scores_name)
        if expected.ndim == 2 and expected.shape[1] > 1:
            top2 = np.sort(expected, axis=1)[:, -2:]
            margin = top2[:, 1] - top2[:, 0]
        else:  # binary decision function: the decision boundary is 0
            margin = np.abs(expected.reshape(n, -1)[:, 0])
    result = report(per_output, tolerance, n)
    mismatched = np.asarray(model.predict(x)).reshape(n) != np.asarray(outputs[label_name]).reshape(n)
    # a label may flip only where the original's top two scores are as close as the observed disagreement
    tie_band = 2 * max(tolerance, result["max_abs_diff"])
    ties = mismatched & (margin <= tie_band) if margin is not None else np.zeros(n, dtype=bool)
    wrong = int(mismatched.sum() - ties.sum())
    if wrong:
        raise ConversionError(
            f"conversion disagrees with the original: {wrong} of {n} predicted labels differ "
            f"(output {label_name!r})",
            label_mismatches=wrong,
            samples=n,
            output=label_name,
        )
    result["label_mismatches"] = int(mismatched.sum())
    result["label_ties"] = int(ties.sum())
    return result


def feature_rows(sample: Sample | None) -> Array | None:
    """The sample as one 2-D float64 array (a one-input model's rows), None when there is no sample."""
    if sample is None:
        return None
    if isinstance(sample, dict):
        if len(sample) != 1:
            raise InvalidInput(
                f"a scikit-learn model has one input; the sample has {len(sample)}: {list(sample)}"
            )
        sample = next(iter(sample.values()))
    if sample.ndim != 2:
        raise InvalidInput(f"the sample must be 2-D (rows × features); got shape {list(sample.shape)}")
    # float64, as the original is used: the served model gets it cast to its input type, and a value that
    # type cannot hold shows as a disagreement
    return np.ascontiguousarray(sample, dtype=np.float64)


def _check_fitted(model: Any, desc: str) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError:
        raise ConversionError(f"{desc} is not fitted; fit it before importing") from None
    except TypeError:  # not an estimator sklearn can inspect: let the converter decide
        pass


def _is_library_type(name: str) -> bool:
    """A class (or ufunc) defined under sklearn / numpy / scipy / builtins, never a plain function.

    skops calls what it reconstructs, so a trusted function name (``builtins.eval``) would run code.
    """
    module, _, attr = name.rpartition(".")
    if module.split(".")[0] not in _SAFE_ROOTS or not attr:
        return False
    try:
        obj = getattr(importlib.import_module(module), attr)
    except Exception:  # not importable: not something the library defines
        return False
    return isinstance(obj, type | np.ufunc)
