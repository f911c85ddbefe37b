"""Trees whose float32 conversion takes other branches: the exact conversion, derived inputs, digests."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conveyor.errors import ConversionError
from conveyor.formats import import_model
from conveyor.formats.derived import derived_inputs
from conveyor.formats.sklearn import FLOAT32
from conveyor.formats.sklearn_exact import convert_exact

Xy = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


@pytest.fixture(scope="module")
def integer_data() -> Xy:
    """Integer features: tree thresholds a float32 scaler lands on the wrong side of (seen as a 0.46 diff)."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3000, size=(500, 5)).astype(np.float64)
    return x, rng.normal(size=500) + x[:, 0] / 100


@pytest.fixture(scope="module")
def flipping(integer_data: Xy) -> Any:
    return make_pipeline(StandardScaler(), RandomForestRegressor(n_estimators=20, random_state=0)).fit(
        *integer_data
    )


def _served(data: bytes, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.float32 if inp.type == "tensor(float)" else np.float64
    return np.asarray(sess.run(None, {inp.name: x.astype(dtype)})[0]).ravel()


def test_without_a_sample_the_regressor_pipeline_is_checked_and_agrees_with_scikit_learn(
    flipping: Any, integer_data: Xy
) -> None:
    result = import_model(flipping)
    parity = result.parity
    assert parity is not None and parity["checked"] and parity["inputs"] == "derived"
    assert parity["conversion"] != FLOAT32 and parity["max_abs_diff"] <= 1e-4
    assert result.signature.inputs[0].datatype == "FP32"  # the user's input type is kept
    x, _ = integer_data
    # on the training data, which the check never saw: the answers are scikit-learn's (float32 was 0.46 off)
    assert np.abs(_served(result.onnx_bytes, x) - flipping.predict(x)).max() <= 1e-4


def test_with_a_sample_the_exact_conversion_is_used_and_recorded(flipping: Any, integer_data: Xy) -> None:
    x, _ = integer_data
    parity = import_model(flipping, sample=x[:200]).parity
    assert parity is not None and parity["inputs"] == "sample" and parity["samples"] == 200
    assert parity["conversion"].startswith("exact") and parity["max_abs_diff"] <= 1e-4


def test_values_float32_cannot_hold_get_fp64_inputs() -> None:
    rng = np.random.default_rng(3)
    x = 1e6 + rng.integers(0, 3000, size=(400, 4)) * 0.01  # float32 steps by 0.0625 here
    y = rng.normal(size=400) + (x[:, 0] - 1e6)
    model = make_pipeline(StandardScaler(), RandomForestRegressor(n_estimators=10, random_state=0)).fit(x, y)
    result = import_model(model, sample=x[:100])
    assert result.signature.inputs[0].datatype == "FP64"
    assert np.abs(_served(result.onnx_bytes, x) - model.predict(x)).max() <= 1e-4


def test_the_refusal_names_the_tolerance_option(flipping: Any, integer_data: Xy) -> None:
    x, _ = integer_data
    with pytest.raises(ConversionError) as err:
        import_model(flipping, sample=x[:50], tolerance=0.0)
    assert "> tolerance 0 (--tolerance) on 50 samples" in str(err.value)
    # a tolerance above the leaf values' float32 rounding (~4e-6) accepts it
    assert import_model(flipping, sample=x[:50], tolerance=1e-5).parity is not None


def test_nothing_to_derive_records_not_checked(integer_data: Xy) -> None:
    parity = import_model(LinearRegression().fit(*integer_data)).parity
    assert parity is not None and parity["checked"] is False
    assert "no sample was given" in parity["reason"] and "--sample" in parity["reason"]


def test_derived_inputs_straddle_every_threshold_and_span_the_scaler(flipping: Any) -> None:
    x = derived_inputs(flipping, 5)
    assert x is not None and x.dtype == np.float32 and 13 < len(x) <= 2048
    scaler = flipping.steps[0][1]
    assert x.min(axis=0).tolist() <= (scaler.mean_ - 2.9 * scaler.scale_).tolist()


def test_the_exact_graph_keeps_fp32_input_and_casts_inside(flipping: Any) -> None:
    import onnx

    graph = onnx.load_from_string(convert_exact(flipping, 5, None, None, fp64_input=False)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.node[0].op_type == "Cast"


def test_the_same_model_converts_to_the_same_bytes_in_any_process(flipping: Any, tmp_path: Path) -> None:
    # pickle, not skops: the file only carries this test's own model to the other processes, and importing
    # skops.io imports every scikit-learn module (torch too, where installed): seconds per process
    path = tmp_path / "reg.pkl"
    path.write_bytes(pickle.dumps(flipping))
    code = (
        "import hashlib, pickle, sys; from pathlib import Path; from conveyor.formats import import_model; "
        "model = pickle.loads(Path(sys.argv[1]).read_bytes()); "
        "print(hashlib.sha256(import_model(model).onnx_bytes).hexdigest())"
    )
    digests = set()
    for seed in ("1", "2", "3"):  # skl2onnx listed opsets in set order, which follows the hash seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    digests.add(hashlib.sha256(import_model(flipping).onnx_bytes).hexdigest())
    assert len(digests) == 1
