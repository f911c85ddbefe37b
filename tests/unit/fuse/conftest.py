"""Small scikit-learn models converted as `conveyor models register` converts them (skl2onnx, no ZipMap),
registered in a real SQLite registry with reference statistics, for fusing."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conveyor.registry import LocalArtifactStore, Registry

FEATURES = 6


@dataclass(frozen=True)
class Models:
    x: np.ndarray  # rows to check on (not the ones registered as the sample)
    sample: np.ndarray
    onnx: dict[str, bytes]  # name -> the converted model
    originals: dict[str, Any]  # name -> the fitted estimator


def _convert(model: Any, features: int, opset: int = 17) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    options = {id(model): {"zipmap": False}} if is_classifier(model) else None
    onx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, features]))],
        options=options,
        target_opset={"": opset, "ai.onnx.ml": 3},
    )
    return bytes(onx.SerializeToString())


@pytest.fixture(scope="session")
def models() -> Models:
    """Three 3-class classifiers (two logistic regressions, an MLP), two regressors, a scaler and a PCA,
    all on the same 6 features."""
    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, FEATURES)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.5)
    target = x @ rng.normal(size=FEATURES) + 0.1 * rng.normal(size=600)
    train = slice(0, 400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted: dict[str, Any] = {
            "logreg": LogisticRegression(max_iter=300).fit(x[train], y[train]),
            "logreg_c": LogisticRegression(C=0.05, max_iter=300).fit(x[train, ::-1], y[train]),
            "mlp": MLPClassifier(hidden_layer_sizes=(32,), max_iter=60, random_state=0).fit(
                x[train], y[train]
            ),
            "linear": LinearRegression().fit(x[train], target[train]),
            "mlp_reg": MLPRegressor(hidden_layer_sizes=(16,), max_iter=80, random_state=0).fit(
                x[train], target[train]
            ),
            "scaler": StandardScaler().fit(x[train]),
            "pca": PCA(3).fit(x[train]),
        }
    onnx = {k: _convert(m, FEATURES) for k, m in fitted.items()}
    onnx["logreg_opset15"] = _convert(fitted["logreg"], FEATURES, opset=15)
    return Models(x[400:], x[:200], onnx, fitted)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(
        f"sqlite:///{tmp_path / 'registry.db'}", LocalArtifactStore(tmp_path / "a"), user="t"
    ) as reg:
        yield reg


Register = Callable[..., str]


@pytest.fixture
def register(registry: Registry, models: Models) -> Register:
    """Register ``models.onnx[key]`` as model ``key`` (or ``name``), with reference statistics from the
    sample when its input is the 6 features; returns the ref."""
    from conveyor.formats.result import signature_of
    from conveyor.observe.reference import compute_reference

    def run(key: str, name: str | None = None, data: bytes | None = None) -> str:
        onnx = data if data is not None else models.onnx[key]
        signature = signature_of(onnx)
        reference = compute_reference(models.sample, signature, source="sample")
        v = registry.register(
            name or key,
            onnx,
            signature=signature.to_dict(),
            framework="sklearn",
            metadata={"reference": reference},
        )
        return v.ref

    return run
