"""``import_model``: pick the framework, load the source safely, convert to ONNX, check parity."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from conveyor.errors import ConversionError, ConveyorError, InvalidInput, NotFound
from conveyor.formats import boosting, detect
from conveyor.formats.parity import first_line
from conveyor.formats.result import FRAMEWORKS, ImportResult
from conveyor.formats.samples import Sample, as_sample


def import_model(
    source: Any,
    *,
    framework: str = "auto",
    sample: Any = None,
    trust_pickle: bool = False,
    tolerance: float = 1e-4,
    opset: int | None = None,
) -> ImportResult:
    """Turn a model (file path or in-memory object) into ONNX bytes, a signature and a parity record.

    Raises ConversionError for a model that cannot be imported or disagrees with its conversion, InvalidInput
    for bad arguments or a bad sample, NotFound for a missing file.
    """
    if framework not in ("auto", *FRAMEWORKS):
        raise InvalidInput(f"unknown framework {framework!r}; expected one of auto, {', '.join(FRAMEWORKS)}")
    if not (isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance >= 0):
        raise InvalidInput(f"tolerance must be a finite number >= 0; got {tolerance!r}")
    try:
        return _import(source, framework, as_sample(sample), trust_pickle, float(tolerance), opset)
    except ConveyorError:
        raise
    except (
        Exception
    ) as e:  # the last boundary: a third-party failure nobody anticipated still reads as one line
        raise ConversionError(f"cannot import the model: {type(e).__name__}: {first_line(e)}") from e


def _import(
    source: Any,
    framework: str,
    sample: Sample | None,
    trust_pickle: bool,
    tolerance: float,
    opset: int | None,
) -> ImportResult:
    origin = ""
    obj: Any = source
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise NotFound(f"model file not found: {path}")
        if not path.is_file():
            raise ConversionError(f"{path} is not a file; {detect.SUPPORTED}")
        obj, framework = _load_file(path, framework, trust_pickle)
        origin = f" from {path.name}"
    if framework == "auto":
        found = detect.detect_object(obj)
        if found is None:
            raise ConversionError(
                f"cannot import a {type(obj).__module__}.{type(obj).__qualname__}; {detect.SUPPORTED}"
            )
        framework = found
    if framework == "onnx":
        from conveyor.formats.onnx import import_onnx

        if not isinstance(obj, Path) and detect.detect_object(obj) != "onnx":
            raise ConversionError(
                f"framework 'onnx' needs ONNX bytes, an onnx.ModelProto or a file; got {_name(obj)}"
            )
        return import_onnx(obj, sample=sample, opset=opset)
    if framework in boosting.LIBRARIES or (framework == "sklearn" and _holds_boosting(obj)):
        if framework in boosting.LIBRARIES and framework not in boosting.libraries_in(obj):
            raise ConversionError(
                f"framework {framework!r} needs a {boosting.TITLES[framework]} booster or estimator; "
                f"got {_name(obj)}"
            )
        return boosting.import_boosting(obj, sample=sample, tolerance=tolerance, opset=opset, origin=origin)
    if framework == "sklearn":
        from conveyor.formats.sklearn import import_sklearn, is_estimator

        if not is_estimator(obj):
            raise ConversionError(f"framework 'sklearn' needs a scikit-learn estimator; got {_name(obj)}")
        return import_sklearn(obj, sample=sample, tolerance=tolerance, opset=opset, origin=origin)
    from conveyor.formats.torch import import_torch, is_module

    if not is_module(obj):
        raise ConversionError(
            f"framework 'pytorch' needs a torch.nn.Module or a torch.export program; got {_name(obj)}"
        )
    return import_torch(obj, sample=sample, tolerance=tolerance, opset=opset, origin=origin)


def _load_file(path: Path, framework: str, trust_pickle: bool) -> tuple[Any, str]:
    """The in-memory model (a Path for ONNX, imported from the file itself) and its framework."""
    kind = detect.file_kind(path)
    wanted = detect.KIND_FRAMEWORK.get(kind)
    if framework == "auto":
        framework = wanted or "auto"
    elif wanted is not None and wanted != framework:
        raise ConversionError(f"{path.name} holds a {wanted} model, not {framework}")
    if kind == detect.ONNX:
        return path, "onnx"
    if kind == detect.SKOPS:
        from conveyor.formats.sklearn import load_skops

        return load_skops(path, trust_pickle=trust_pickle), "sklearn"
    if kind in detect.BOOSTER_KINDS:
        return boosting.load_booster(path, detect.BOOSTER_KINDS[kind]), detect.BOOSTER_KINDS[kind]
    if kind in detect.TORCH_KINDS:
        from conveyor.formats.torch_files import load_torch_file

        return load_torch_file(path, kind, trust_pickle=trust_pickle), "pytorch"
    from conveyor.formats.pickles import load_pickle

    return load_pickle(path, trust_pickle=trust_pickle), framework


def _holds_boosting(obj: object) -> bool:
    """A scikit-learn estimator that is or holds (as a pipeline step) an XGBoost / LightGBM estimator."""
    from conveyor.formats.sklearn import is_estimator

    return is_estimator(obj) and bool(boosting.libraries_in(obj))


def _name(obj: object) -> str:
    return type(obj).__name__ if not isinstance(obj, Path) else f"file {obj.name}"
