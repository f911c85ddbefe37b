"""`conveyor fuse`: two registered iris classifiers fused into one ensemble version, `models show` with the
parts as its lineage, a refusal, and `conveyor serve` answering the fused version as the parts combined."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

import conveyor
from conveyor.settings import Settings
from tests.e2e.conftest import CliRunner
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok


@pytest.fixture(scope="module")
def second_iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another iris classifier (unscaled, strongly regularized): it disagrees with the first on some rows."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from skops.io import dump

    x, y = load_iris(return_X_y=True)
    path = tmp_path_factory.mktemp("iris2") / "iris2.skops"
    dump(LogisticRegression(C=0.05, max_iter=500).fit(x, y), path)
    return path


def _outputs(cli_env: dict[str, str], ref: str, x: np.ndarray) -> dict[str, np.ndarray]:
    settings = Settings(home=Path(cli_env["CONVEYOR_HOME"]))
    with conveyor.open_registry(settings) as registry:
        data = registry.artifact_bytes(registry.resolve(ref))
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x}), strict=True))


@pytest.mark.slow  # five conveyor processes and a server: about 15 s on 2 cores
def test_fuse_registers_an_ensemble_show_gives_its_parts_and_serve_answers_it(
    cli: CliRunner,
    cli_env: dict[str, str],
    iris_files: dict[str, Path],
    second_iris: Path,
    processes: ProcessGroup,
) -> None:
    sample = str(iris_files["sample"])
    cli("models", "register", "iris", str(iris_files["skops"]), "--sample", sample)
    cli("models", "register", "iris2", str(second_iris), "--sample", sample)

    out = cli("fuse", "both", "--ensemble", "weighted", "--weights", "2,1", "iris:1", "iris2:1", "--json")
    result = json.loads(out.stdout)
    v = result["registered"]
    assert (v["name"], v["version"]) == ("both", 1)
    assert result["fused"] == "ensemble weighted of iris:1, iris2:1 (weights 2, 1)"
    assert result["parts"] == ["iris:1", "iris2:1"]
    assert result["parity"]["problems"] == [] and result["parity"]["max_abs_diff"] <= 1e-5
    assert result["parity"]["source"] == "drawn from iris:1's reference statistics"

    shown = cli("models", "show", "both:1").stdout
    assert "lineage    both:1 ← iris:1 + iris2:1" in shown
    assert "fused      ensemble weighted of iris:1, iris2:1 (weights 2, 1); max |diff| " in shown
    assert "label agrees 100% against the parts combined in numpy on 256 rows" in shown

    refused = cli("fuse", "both", "--ensemble", "weighted", "iris:1", "iris2:1", check=False)
    assert (refused.returncode, refused.stderr.strip()) == (
        2,
        "error: --ensemble weighted needs --weights: one number per part",
    )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = processes.start([conveyor_exe(), "serve", "both:1", "--port", str(port)], env=cli_env)
    wait_http_ok(f"{url}/v2/health/ready", proc)
    x = np.load(iris_files["sample"])
    body = {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    }
    r = httpx.post(f"{url}/v2/models/both/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    got = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}
    a, b = _outputs(cli_env, "iris:1", x), _outputs(cli_env, "iris2:1", x)
    want = (2 * a["probabilities"] + b["probabilities"]) / 3
    assert np.abs(got["probabilities"] - want).max() <= 1e-5
    np.testing.assert_array_equal(got["label"], np.argmax(want, axis=1))  # iris's classes are 0, 1, 2
