"""Drift end to end: register with a reference, serve, send inputs; /metrics shows which version drifts.

The acceptance point of issue 14: serving inputs shifted by two reference standard deviations raise
``conveyor_drift_psi`` above the alert threshold (0.25); inputs drawn from the reference's distribution
do not.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from prometheus_client.parser import text_string_to_metric_families

from conveyor.observe.drift import PSI_DRIFT, PSI_WARN
from tests.e2e.conftest import CliRunner
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok
from tests.fixtures.stack import UpStack

MEANS = np.array([0.0, 5.0])
STDS = np.array([1.0, 2.0])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """An identity model on two FP32 features and 3000 reference rows: N(0, 1) and N(5, 2)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "identity.onnx")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "reference.npy", rng.normal(MEANS, STDS, size=(3000, 2)).astype(np.float32))
    return {"model": tmp_path / "identity.onnx", "reference": tmp_path / "reference.npy"}


def drift_samples(url: str) -> dict[tuple[str, str, str], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, s.labels["version"], s.labels["feature"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("conveyor_drift_")
    }


def test_shifted_inputs_drift_and_unshifted_do_not(
    cli: CliRunner, cli_env: dict[str, str], files: dict[str, Path], processes: ProcessGroup
) -> None:
    out = cli(
        "models", "register", "feat", str(files["model"]), "--reference", str(files["reference"]), "--json"
    )
    reference = json.loads(out.stdout)["metadata"]["reference"]
    assert reference["available"] and reference["source"] == "reference" and reference["rows"] == 3000
    assert [f["name"] for f in reference["features"]] == ["x[0]", "x[1]"]
    cli("models", "register", "feat", str(files["model"]), "--reference", str(files["reference"]))
    shown = cli("models", "show", "feat:1").stdout
    assert "2 features from the reference (3000 rows, 10 bins)" in shown

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = processes.start([conveyor_exe(), "serve", "feat:1", "feat:2", "--port", str(port)], env=cli_env)
    wait_http_ok(f"{url}/v2/health/ready", proc)
    rng = np.random.default_rng(1)
    with httpx.Client(base_url=url, timeout=10) as client:
        for version, shift in (("1", 0.0), ("2", 2.0)):
            for _ in range(100):  # every 10th request's 50 rows are kept: 500 rows per version
                x = rng.normal(MEANS + shift * STDS, STDS, size=(50, 2)).astype(np.float32)
                body = {
                    "inputs": [
                        {"name": "x", "shape": [50, 2], "datatype": "FP32", "data": x.ravel().tolist()}
                    ]
                }
                r = client.post(f"/v2/models/feat/versions/{version}/infer", json=body)
                assert r.status_code == 200, r.text

    samples = drift_samples(url)
    for feature in ("x[0]", "x[1]"):
        assert samples[("conveyor_drift_psi", "1", feature)] < PSI_WARN
        assert abs(samples[("conveyor_drift_mean_shift", "1", feature)]) < 0.3
        assert samples[("conveyor_drift_psi", "2", feature)] > PSI_DRIFT
        assert samples[("conveyor_drift_mean_shift", "2", feature)] == pytest.approx(2.0, abs=0.3)


def test_a_version_without_reference_exports_no_drift(
    cli: CliRunner, cli_env: dict[str, str], files: dict[str, Path], processes: ProcessGroup
) -> None:
    out = cli("models", "register", "plain", str(files["model"]), "--json")
    assert json.loads(out.stdout)["metadata"]["reference"] == {
        "available": False,
        "reason": "no sample: register with --sample or --reference to measure drift",
    }
    assert "no sample: register with --sample or --reference" in cli("models", "show", "plain:1").stdout
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = processes.start([conveyor_exe(), "serve", "plain:1", "--port", str(port)], env=cli_env)
    wait_http_ok(f"{url}/v2/health/ready", proc)
    x = np.zeros((300, 2), dtype=np.float32)
    body = {"inputs": [{"name": "x", "shape": [300, 2], "datatype": "FP32", "data": x.ravel().tolist()}]}
    assert httpx.post(f"{url}/v2/models/plain/infer", json=body, timeout=10).status_code == 200
    assert drift_samples(url) == {}


SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: web
spec:
  model: feat:1
  replicas: 1
  monitoring:
    drift: {sampleEvery: 1, window: 500}
    inferenceLog: {enabled: true, sampleEvery: 4, maxBytes: 4096, keep: 2}
"""


@pytest.mark.timeout(240)
def test_up_describe_shows_the_drift_of_each_version_and_the_inference_log_is_written(
    cli_env: dict[str, str], files: dict[str, Path], processes: ProcessGroup, tmp_path: Path
) -> None:
    stack = UpStack(processes, cli_env, Path(cli_env["CONVEYOR_HOME"]))
    try:
        stack.cli("models", "register", "feat", str(files["model"]), "--reference", str(files["reference"]))
        spec = tmp_path / "web.yaml"
        spec.write_text(SPEC)
        stack.start("-f", str(spec))
        rng = np.random.default_rng(2)
        with httpx.Client(base_url=stack.gateway_url, timeout=10, headers=stack.headers) as client:
            for i in range(12):  # 600 rows: the window holds the last 500
                x = rng.normal(MEANS + 2.0 * STDS, STDS, size=(50, 2)).astype(np.float32)
                data = x.ravel().tolist()
                body = {
                    "id": f"req-{i}",
                    "inputs": [{"name": "x", "shape": [50, 2], "datatype": "FP32", "data": data}],
                }
                assert client.post("/v2/models/web/infer", json=body).status_code == 200

        def drifting() -> bool:
            versions = stack.api("/deployments/web/drift")["versions"]
            return bool(versions and versions[0]["features"])

        stack.wait(drifting, timeout=30, what="drift scraped")  # the control plane scrapes every 2 s
        described = json.loads(stack.cli("describe", "deployment", "web", "--json").stdout)["drift"]
        (version,) = described["versions"]
        assert version["version"] == "1" and version["reference"]["rows"] == 3000
        assert [f["status"] for f in version["features"]] == ["drift", "drift"]
        assert all(
            f["psi"] > PSI_DRIFT and f["mean_shift"] == pytest.approx(2.0, abs=0.3)
            for f in version["features"]
        )
        human = stack.cli("describe", "deployment", "web").stdout
        assert "Drift of version 1 (against 3000 reference rows" in human and "x[1]" in human

        logs = Path(cli_env["CONVEYOR_HOME"]) / "inference-logs" / "web"
        written = sorted(p.name for p in logs.glob("inference.jsonl*"))
        assert written and written[0] == "inference.jsonl" and len(written) <= 3
        record = json.loads((logs / "inference.jsonl").read_text().splitlines()[-1])
        assert (
            record["model"] == "web" and record["version"] == "1" and record["request_id"].startswith("req-")
        )
        assert len(record["inputs"]["x"]) == 50 and len(record["outputs"]["y"]) == 50
    finally:
        stack.stop()
