"""``conveyor export k8s|kserve -f SPEC`` on a registered model: one file per object, each valid for
``kubernetes-validate --strict`` against a pinned Kubernetes version; the InferenceService valid for
KServe's CRD schema; bad inputs one line and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conveyor.settings import Settings
from tests.e2e.conftest import CliRunner
from tests.fixtures.processes import REPO, ProcessGroup, free_port, wait_http_ok
from tests.unit.k8s.specs import K8S_VERSION, kserve_validator

SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata: {name: relu}
spec:
  model: relu:1
  autoscaling: {minReplicas: 2, maxReplicas: 6, targetInFlight: 4}
  batching: {maxBatchSize: 16}
---
apiVersion: conveyor.dev/v1
kind: Deployment
metadata: {name: relu-fixed}
spec:
  model: relu@production
  replicas: 3
  resources: {threads: 2}
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with relu:1 (aliased production) registered through the Python API (faster than the CLI)."""
    import onnx
    from onnx import TensorProto, helper

    import conveyor

    folder = tmp_path_factory.mktemp("k8s")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, folder / "relu.onnx")
    conveyor.register(
        "relu", folder / "relu.onnx", aliases=["production"], settings=Settings(home=folder / "home")
    )
    (folder / "spec.yaml").write_text(SPEC)
    return folder


@pytest.fixture
def run(home: Path, cli_env: dict[str, str]) -> CliRunner:
    from tests.fixtures.processes import conveyor_exe

    env = {**cli_env, "CONVEYOR_HOME": str(home / "home")}

    def call(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([conveyor_exe(), *args], env=env, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"conveyor {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    return call


def _validator() -> str:
    beside = Path(sys.executable).parent / "kubernetes-validate"
    return str(beside) if beside.exists() else "kubernetes-validate"


def test_export_k8s_writes_one_strictly_valid_file_per_object(
    home: Path, run: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "manifests"
    proc = run("export", "k8s", "-f", str(home / "spec.yaml"), "-o", str(out), "--namespace", "ml")
    files = sorted(p.name for p in out.iterdir())
    shared = [
        "deployment-conveyor-control-plane.yaml",
        "deployment-conveyor-gateway.yaml",
        "networkpolicy-conveyor-control-plane.yaml",
        "networkpolicy-conveyor-gateway.yaml",
        "persistentvolumeclaim-conveyor-home.yaml",
        "poddisruptionbudget-conveyor-gateway.yaml",
        "role-conveyor-control-plane.yaml",
        "rolebinding-conveyor-control-plane.yaml",
        "secret-conveyor-settings.yaml",
        "service-conveyor-control-plane.yaml",
        "service-conveyor-gateway.yaml",
        "serviceaccount-conveyor-control-plane.yaml",
    ]
    per_version = [
        f"{kind}-{name}-v1.yaml"
        for name in ("relu", "relu-fixed")
        for kind in ("deployment", "service", "poddisruptionbudget", "networkpolicy")
    ]
    assert files == sorted([*shared, *per_version, "horizontalpodautoscaler-relu-v1.yaml"])
    assert proc.stderr.count("wrote ") == len(files)
    for path in out.iterdir():
        (obj,) = list(yaml.safe_load_all(path.read_text()))  # one object per file
        assert obj["metadata"]["namespace"] == "ml"
    # The pinned validator, offline: its schemas ship in the package.
    check = subprocess.run(
        [_validator(), "--strict", "-k", K8S_VERSION, *sorted(str(p) for p in out.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "no_proxy": "*",
            "https_proxy": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9",
        },
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("passed") == len(files), check.stdout
    deployment = yaml.safe_load((out / "deployment-relu-fixed-v1.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 3
    assert container["resources"]["limits"]["cpu"] == "2"
    assert any(a.startswith("--sha256=relu:1=") for a in container["args"])


def test_export_kserve_writes_an_inference_service_valid_for_kserves_schema(
    home: Path, run: CliRunner, tmp_path: Path
) -> None:
    validator = kserve_validator()  # skips without ../shared, before running anything
    target = tmp_path / "isvc.yaml"
    run(
        "export",
        "kserve",
        "relu",
        "-f",
        str(home / "spec.yaml"),
        "-o",
        str(target),
        "--storage-uri",
        "s3://b/relu/1",
    )
    isvc = yaml.safe_load(target.read_text())
    validator.validate(isvc)
    model = isvc["spec"]["predictor"]["model"]
    assert (model["protocolVersion"], model["modelFormat"]["name"], model["storageUri"]) == (
        "v2",
        "onnx",
        "s3://b/relu/1",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["export", "k8s", "-o", "out"],
            "error: name a deployment of the control plane, or give a Deployment file with -f",
        ),
        (["export", "kserve", "nope", "-f", "{spec}"], "error: no Deployment 'nope' in {spec}"),
        (["export", "k8s", "-f", "{spec}", "--namespace", "Bad_NS"], "error: invalid namespace 'Bad_NS'"),
    ],
)
def test_bad_inputs_are_one_line_and_a_non_zero_exit(
    home: Path, run: CliRunner, tmp_path: Path, args: list[str], message: str
) -> None:
    values = {"spec": str(home / "spec.yaml")}
    proc = run(*[a.format(**values) for a in args], check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(message.format(**values))


def test_a_spec_whose_model_is_not_registered_is_one_line(home: Path, run: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "other.yaml"
    spec.write_text(SPEC.replace("relu:1", "ghost:1"))
    proc = run("export", "kserve", "relu", "-f", str(spec), check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "ghost" in proc.stderr


def test_export_k8s_of_a_name_reads_it_from_the_control_plane_and_target_kubernetes_needs_a_cluster(
    home: Path, run: CliRunner, cli_env: dict[str, str], processes: ProcessGroup, tmp_path: Path
) -> None:
    """The real management API (tests/fixtures/api_server.py) over the same home, with no kubeconfig."""
    env = {**cli_env, "CONVEYOR_HOME": str(home / "home"), "KUBECONFIG": str(tmp_path / "no-kubeconfig")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    port = free_port()
    proc = processes.start([sys.executable, "-m", "tests.fixtures.api_server", str(port)], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/api/v1/health", proc, timeout=30)
    local = tmp_path / "local.yaml"
    local.write_text(SPEC.split("---\n")[1])  # relu-fixed: 3 replicas of relu@production, local target
    run("apply", "-f", str(local), "--url", url)
    out = tmp_path / "from-control-plane"
    run("export", "k8s", "relu-fixed", "--url", url, "-o", str(out))
    deployment = yaml.safe_load((out / "deployment-relu-fixed-v1.yaml").read_text())
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["annotations"]["conveyor.dev/model"] == "relu:1"
    assert len(list(out.iterdir())) == 16  # the 12 shared objects and 4 of relu-fixed (no HPA)

    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(
        SPEC.split("---\n")[1].replace("name: relu-fixed", "name: relu-k8s") + "  target: kubernetes\n"
    )
    refused = run("apply", "-f", str(cluster), "--url", url, check=False)
    assert refused.returncode == 7  # unavailable
    assert refused.stderr.strip().splitlines() == [
        "error: kubernetes: no cluster configured: no usable kubeconfig (Invalid kube-config file. No "
        "configuration found.) and not running in a cluster"
    ]
    listed = run("get", "deployments", "--url", url, "--json").stdout
    assert "relu-k8s" not in listed  # nothing stored
