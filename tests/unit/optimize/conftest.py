"""A scikit-learn MLP registered in a real SQLite registry, and data files to optimize it with."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conveyor.registry import LocalArtifactStore, Registry

FEATURES = 20


@dataclass(frozen=True)
class MlpData:
    onnx: bytes
    sample: np.ndarray  # rows registered with, and what the reference statistics come from
    calibration: Path
    data: Path
    labels: Path
    tiny: Path  # two rows near zero: an unrepresentative calibration set


@pytest.fixture(scope="session")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> MlpData:
    """A 3-class MLP (two hidden layers of 128: its weights are most of its bytes), converted by skl2onnx."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, FEATURES)).astype(np.float32)
    y = ((x[:, :3].sum(axis=1) > 0).astype(np.int64) + (x[:, 3] > 1)).astype(np.int64)
    clf = MLPClassifier(hidden_layer_sizes=(128, 128), max_iter=40, random_state=0)
    with warnings.catch_warnings():  # 40 epochs: not converged, accurate enough, and a second of CPU, not ten
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x[:500], y[:500])
    model = to_onnx(
        clf,
        initial_types=[("input", FloatTensorType([None, FEATURES]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    d = tmp_path_factory.mktemp("optimize-data")
    np.save(d / "calibration.npy", x[200:500])
    np.save(d / "data.npy", x[500:])
    np.save(d / "labels.npy", y[500:])
    np.save(d / "tiny.npy", x[:2] * 0.05)
    return MlpData(
        model.SerializeToString(),
        x[:200],
        d / "calibration.npy",
        d / "data.npy",
        d / "labels.npy",
        d / "tiny.npy",
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(
        f"sqlite:///{tmp_path / 'registry.db'}", LocalArtifactStore(tmp_path / "a"), user="t"
    ) as reg:
        yield reg


@pytest.fixture
def registered(registry: Registry, mlp: MlpData) -> Registry:
    """``mlp:1``, registered as `conveyor models register --sample` would: with reference statistics."""
    from conveyor.formats.result import signature_of
    from conveyor.observe.reference import compute_reference

    signature = signature_of(mlp.onnx)
    reference = compute_reference(mlp.sample, signature, source="sample")
    registry.register(
        "mlp", mlp.onnx, signature=signature.to_dict(), framework="sklearn", metadata={"reference": reference}
    )
    return registry
