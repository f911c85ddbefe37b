"""register → `conveyor serve` → HTTP clients and `conveyor predict`: the answers equal ONNX Runtime's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

import conveyor
from conveyor.formats import import_model
from conveyor.settings import Settings
from tests.e2e.conftest import CliRunner
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok


@pytest.fixture
def registered(cli: CliRunner, iris_files: dict[str, Path]) -> None:
    cli(
        "models",
        "register",
        "iris",
        str(iris_files["skops"]),
        "--sample",
        str(iris_files["sample"]),
        "--alias",
        "production",
    )
    cli("models", "register", "iris", str(iris_files["skops"]))


def _reference(cli_env: dict[str, str], ref: str, x: np.ndarray) -> list[np.ndarray]:
    settings = Settings(home=Path(cli_env["CONVEYOR_HOME"]))
    with conveyor.open_registry(settings) as registry:
        data = registry.artifact_bytes(registry.resolve(ref))
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return list(sess.run(None, {"input": x}))


def test_serve_alias_and_predict_over_http(
    registered: None, cli: CliRunner, cli_env: dict[str, str], processes: ProcessGroup
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = processes.start(
        [conveyor_exe(), "serve", "iris@production", "iris:2", "--port", str(port)], env=cli_env
    )
    wait_http_ok(f"{url}/v2/health/ready", proc)

    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]], dtype=np.float32)
    body = {
        "id": "req-7",
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": x.ravel().tolist()}],
    }
    r = httpx.post(f"{url}/v2/models/iris/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["id"] == "req-7" and answer["model_name"] == "iris" and answer["model_version"] == "1"
    label, proba = _reference(cli_env, "iris:1", x)
    outs = {o["name"]: o for o in answer["outputs"]}
    assert [o["datatype"] for o in answer["outputs"]] == ["INT64", "FP32"]
    got_label = next(o for o in answer["outputs"] if o["datatype"] == "INT64")["data"]
    got_proba = next(o for o in answer["outputs"] if o["datatype"] == "FP32")["data"]
    assert got_label == label.tolist()
    np.testing.assert_allclose(np.array(got_proba).reshape(proba.shape), proba, rtol=1e-6)
    assert len(outs) == 2

    meta = httpx.get(f"{url}/v2/models/iris").json()
    assert sorted(meta["versions"]) == ["1", "2"]

    out = cli("predict", "iris:1", "--url", url, "--data", json.dumps(x.tolist()), "--json")
    predicted = json.loads(out.stdout)
    assert next(o for o in predicted["outputs"] if o["datatype"] == "INT64")["data"] == label.tolist()
    binary = cli("predict", "iris", "--url", url, "--data", json.dumps(x.tolist()), "--binary", "--json")
    assert (
        next(o for o in json.loads(binary.stdout)["outputs"] if o["datatype"] == "INT64")["data"]
        == label.tolist()
    )
    human = cli("predict", "iris:1", "--url", url, "--data", json.dumps(x.tolist()))
    assert "iris:1" in human.stdout
    cli_env["CONVEYOR_URL"] = "http://127.0.0.1:1"  # the management API: predict does not use it
    cli_env["CONVEYOR_GATEWAY_URL"] = url
    via_env = cli("predict", "iris:1", "--data", json.dumps(x.tolist()), "--json")
    assert json.loads(via_env.stdout)["outputs"] == predicted["outputs"]
    del cli_env["CONVEYOR_URL"], cli_env["CONVEYOR_GATEWAY_URL"]

    missing = cli("predict", "nosuch", "--url", url, "--data", "[[1,2,3,4]]", check=False)
    assert missing.returncode == 3 and "Traceback" not in missing.stderr
    wrong = cli("predict", "iris:1", "--url", url, "--data", '{"nope": [[1,2,3,4]]}', check=False)
    assert wrong.returncode == 2 and "nope" in wrong.stderr


def test_predict_in_process_from_registry(
    registered: None, cli: CliRunner, cli_env: dict[str, str], iris_files: dict[str, Path]
) -> None:
    x = np.load(iris_files["sample"])
    label, _ = _reference(cli_env, "iris@production", x)
    out = cli("predict", "iris@production", "--data", str(iris_files["sample"]), "--json")
    predicted = json.loads(out.stdout)
    assert next(o for o in predicted["outputs"] if o["datatype"] == "INT64")["data"] == label.tolist()
    csv = cli("predict", "iris@production", "--data", str(iris_files["csv"]), "--json")
    assert len(next(o for o in json.loads(csv.stdout)["outputs"] if o["datatype"] == "INT64")["data"]) == 10


def _outputs(answer: dict[str, Any]) -> dict[str, np.ndarray]:
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}


def test_serve_a_model_file_directly_answers_as_onnx_runtime_does(
    iris_files: dict[str, Path], cli: CliRunner, cli_env: dict[str, str], processes: ProcessGroup
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = processes.start(
        [conveyor_exe(), "serve", str(iris_files["skops"]), "--port", str(port)], env=cli_env
    )
    wait_http_ok(f"{url}/v2/models/iris/ready", proc)

    # The reference: the same file converted here and run by ONNX Runtime directly, no Conveyor in the path.
    onnx_bytes = import_model(iris_files["skops"]).onnx_bytes
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    x = np.load(iris_files["sample"])
    names = [o.name for o in sess.get_outputs()]
    expected = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x}), strict=True))
    label_name = next(n for n, v in expected.items() if v.dtype == np.int64)
    assert len(set(expected[label_name].tolist())) == 3  # every class in the sample: a constant answer fails

    body = {
        "id": "file-1",
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
    }
    r = httpx.post(f"{url}/v2/models/iris/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "file-1" and r.json()["model_name"] == "iris"
    served = _outputs(r.json())
    assert served.keys() == expected.keys()
    assert served[label_name].tolist() == expected[label_name].tolist()
    for name, want in expected.items():
        np.testing.assert_allclose(served[name], want, rtol=1e-6, atol=1e-7)

    for extra in ((), ("--binary",)):
        out = cli("predict", "iris", "--url", url, "--data", str(iris_files["sample"]), "--json", *extra)
        predicted = _outputs(json.loads(out.stdout))
        assert predicted[label_name].tolist() == expected[label_name].tolist(), extra
        for name, want in expected.items():
            np.testing.assert_allclose(predicted[name], want, rtol=1e-6, atol=1e-7)


def test_serve_unknown_model_fails_with_one_line(cli: CliRunner) -> None:
    proc = cli("serve", "nosuch@production", "--port", str(free_port()), check=False)
    assert proc.returncode == 3
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_python_api_register_and_load(tmp_path: Path, iris_files: dict[str, Path]) -> None:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    settings = Settings(home=tmp_path / "home")
    est = DecisionTreeClassifier(max_depth=3).fit(x, y)
    info = conveyor.register(
        "tree", est, sample=x[:20].astype(np.float32), aliases=["staging"], settings=settings
    )
    assert info.version == 1 and info.aliases == ["staging"]
    model = conveyor.load("tree@staging", settings=settings)
    result = model.predict({"input": x[:5]})  # float64 is cast to the declared FP32
    labels = next(v for v in result.values() if v.dtype == np.int64)
    assert labels.tolist() == est.predict(x[:5]).tolist()
    assert model.predict(x[:5].astype(np.float32)).keys() == result.keys()
