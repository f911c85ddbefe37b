"""`conveyor models register` of an XGBoost model file, then `conveyor predict` answering as XGBoost does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.datasets import make_classification

from tests.e2e.conftest import CliRunner


def test_xgboost_file_registers_and_predicts_like_xgboost(tmp_path: Path, cli: CliRunner) -> None:
    x, y = make_classification(
        n_samples=60, n_features=4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
    )
    model = xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1).fit(x, y)
    model.save_model(tmp_path / "churn.json")
    np.save(tmp_path / "sample.npy", x)

    out = cli(
        "models", "register", "churn", str(tmp_path / "churn.json"), "--sample", str(tmp_path / "sample.npy")
    )
    assert "Registered churn:1 (xgboost)" in out.stdout
    shown = json.loads(cli("models", "show", "churn:1", "--json").stdout)
    assert shown["framework"] == "xgboost"
    assert shown["signature"]["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in shown["signature"]["outputs"]] == ["label", "probabilities"]
    parity = shown["metadata"]["parity"]
    assert parity["checked"] is True and parity["max_abs_diff"] <= 1e-4 and parity["samples"] == 60

    rows = x[:5].astype(np.float32)
    answer = json.loads(cli("predict", "churn", "--data", json.dumps(rows.tolist()), "--json").stdout)
    outputs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}
    np.testing.assert_array_equal(outputs["label"], model.predict(rows))
    np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(rows), atol=1e-5)


def test_a_file_that_is_no_model_is_one_line(tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "churn.json").write_text('{"learner": {"truncated')
    proc = cli("models", "register", "churn", str(tmp_path / "churn.json"), check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "cannot load churn.json with XGBoost: " in proc.stderr
