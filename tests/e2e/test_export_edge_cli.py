"""`conveyor export edge`: the bundle, run in a fresh virtual environment that has only onnxruntime and numpy,
answers what `conveyor serve` answers for the same version over HTTP — through run.py's command line, its
load()/predict() API and its own V2 endpoint; a quantized bundle answers as the version `conveyor optimize`
registers with the same method."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.e2e.conftest import CliRunner
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok


@pytest.fixture(scope="session")
def edge_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment (no system site-packages, no pip) with onnxruntime and numpy alone, at the
    versions Conveyor pins, installed by this interpreter's pip from the package index (or its cache)."""
    venv = tmp_path_factory.mktemp("edge-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pins = [f"{p}=={importlib.metadata.version(p)}" for p in ("onnxruntime", "numpy")]
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", *pins],
        check=True,
        timeout=600,
    )
    listed = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(sorted(d.metadata['Name'] for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.strip() == "['numpy', 'onnxruntime']"
    return python


@pytest.fixture(scope="module")
def mlp_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from skops.io import dump

    d = tmp_path_factory.mktemp("edge-mlp")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 12)).astype(np.float32)
    y = (x[:, :3].sum(axis=1) > 0).astype(np.int64) + (x[:, 3] > 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=30, random_state=0).fit(x[:300], y[:300])
    dump(model, d / "mlp.skops")
    np.save(d / "sample.npy", x[:200])
    np.save(d / "x.npy", x[300:364])
    return {"skops": d / "mlp.skops", "sample": d / "sample.npy", "x": d / "x.npy"}


def _body(x: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    }


def _arrays(answer: dict[str, Any]) -> dict[str, np.ndarray]:
    """A V2 JSON answer's outputs as arrays of their datatype (JSON numbers back to float32 exactly)."""
    dtypes = {"FP32": np.float32, "INT64": np.int64}
    return {
        o["name"]: np.array(o["data"], dtype=dtypes[o["datatype"]]).reshape(o["shape"])
        for o in answer["outputs"]
    }


def _same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want) == ["label", "probabilities"]
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.slow  # a virtual environment with onnxruntime (~20 s), conveyor serve, two bundles
def test_the_bundle_in_a_bare_venv_answers_what_conveyor_serve_answers(
    cli: CliRunner,
    cli_env: dict[str, str],
    processes: ProcessGroup,
    mlp_files: dict[str, Path],
    edge_python: Path,
    tmp_path: Path,
) -> None:
    f = {k: str(v) for k, v in mlp_files.items()}
    cli("models", "register", "mlp", f["skops"], "--sample", f["sample"])
    optimized = json.loads(
        cli("optimize", "mlp:1", "--quantize", "dynamic", "--measure-seconds", "0.02", "--json").stdout
    )
    assert optimized["registered"]["version"] == 2
    plain = json.loads(cli("export", "edge", "mlp:1", "-o", str(tmp_path / "plain"), "--json").stdout)
    quantized = json.loads(
        cli("export", "edge", "mlp:1", "--quantize", "dynamic", "-o", str(tmp_path / "int8"), "--json").stdout
    )
    v1 = json.loads(cli("models", "show", "mlp:1", "--json").stdout)
    assert plain["model"]["sha256"] == quantized["quantization"]["of_sha256"] == v1["sha256"]
    assert quantized["files"]["model.ort"]["size"] < plain["files"]["model.ort"]["size"] * 0.6

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = processes.start([conveyor_exe(), "serve", "mlp:1", "mlp:2", "--port", str(port)], env=cli_env)
    wait_http_ok(f"{url}/v2/health/ready", server)
    x = np.load(mlp_files["x"])
    served = {}
    for version in ("1", "2"):
        r = httpx.post(f"{url}/v2/models/mlp/versions/{version}/infer", json=_body(x), timeout=30)
        assert r.status_code == 200, r.text
        served[version] = _arrays(r.json())

    # run.py's command line, in the bare environment
    for bundle, version in (("plain", "1"), ("int8", "2")):
        out = tmp_path / f"{bundle}.npz"
        run = [str(edge_python), str(tmp_path / bundle / "run.py"), "--input", f["x"], "--output", str(out)]
        subprocess.run(run, check=True, timeout=60, cwd=tmp_path)
        with np.load(out) as z:
            _same({k: z[k] for k in z.files}, served[version])

    # its Python API, imported from the bundle folder
    code = (
        "import sys, json, numpy as np; sys.path.insert(0, sys.argv[1]); import run; m = run.load(); "
        "print(json.dumps(run.response(m, m.predict(np.load(sys.argv[2])))))"
    )
    answer = subprocess.run(
        [str(edge_python), "-c", code, str(tmp_path / "plain"), f["x"]],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    _same(_arrays(json.loads(answer.stdout)), served["1"])

    # its V2 endpoint
    edge_port = free_port()
    edge = processes.start(
        [str(edge_python), str(tmp_path / "plain" / "run.py"), "serve", "--port", str(edge_port)]
    )
    edge_url = f"http://127.0.0.1:{edge_port}"
    wait_http_ok(f"{edge_url}/v2/health/ready", edge)
    r = httpx.post(f"{edge_url}/v2/models/mlp/infer", json={"id": "e-1", **_body(x)}, timeout=30)
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["model_version"]) == ("e-1", "1")
    _same(_arrays(r.json()), served["1"])
    bad = httpx.post(f"{edge_url}/v2/models/mlp/infer", json=_body(x[:, :5]), timeout=30)
    assert bad.status_code == 400 and bad.json()["error"].startswith("inference failed: ")

    # a changed model file is refused (exit 5) before anything runs
    model = tmp_path / "plain" / "model.ort"
    model.write_bytes(model.read_bytes()[:-1])
    refused = subprocess.run(
        [str(edge_python), str(tmp_path / "plain" / "run.py"), "--input", f["x"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 5 and "model.ort does not match the manifest" in refused.stderr
