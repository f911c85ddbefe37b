"""`conveyor apply / diff / get / describe / scale / rollback / history / delete / endpoints` against a real
management API process (tests/fixtures/api_server.py: the real API, a stand-in for the replicas)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import CliRunner
from tests.fixtures.homes import copy_home, register
from tests.fixtures.processes import REPO, ProcessGroup, conveyor_exe, free_port, wait_http_ok

TINY = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: tiny
spec:
  model: tiny@prod
  replicas: {replicas}
"""
AUTO = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: auto
spec:
  model: tiny:1
  autoscaling:
    minReplicas: 1
    maxReplicas: 3
"""


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory: pytest.TempPathFactory, logreg_onnx: Path) -> Path:
    """A home with model tiny (v1 = prod, v2), registered in-process: setup, copied for each test."""
    home = tmp_path_factory.mktemp("tiny") / "home"
    register(home, "tiny", logreg_onnx, aliases=["prod"])
    register(home, "tiny", logreg_onnx)
    return home


@pytest.fixture
def api(cli_env: dict[str, str], processes: ProcessGroup, tiny_home: Path) -> str:
    """A management API on a free port over CONVEYOR_HOME with model tiny (v1 = prod, v2), at CONVEYOR_URL."""
    copy_home(tiny_home, cli_env)
    url = f"http://127.0.0.1:{free_port()}"
    proc = processes.start(
        [sys.executable, "-m", "tests.fixtures.api_server", url.rsplit(":", 1)[1]], env=cli_env, cwd=REPO
    )
    wait_http_ok(f"{url}/api/v1/health", proc, timeout=30)
    cli_env["CONVEYOR_URL"] = url
    return url


def write(tmp_path: Path, text: str, name: str = "tiny.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_apply_twice_then_change_get_describe_and_history(
    cli: CliRunner, cli_env: dict[str, str], api: str, tmp_path: Path
) -> None:
    spec = write(tmp_path, TINY.format(replicas=2))
    assert cli("apply", "-f", spec).stdout.strip() == "deployment/tiny created (revision 1: tiny:1)"
    assert cli("apply", "-f", spec).stdout.strip() == "deployment/tiny unchanged (revision 1: tiny:1)"
    assert cli("diff", "-f", spec).stdout == ""

    changed = write(tmp_path, TINY.format(replicas=3))
    diff = cli("diff", "-f", changed, check=False)
    assert diff.returncode == 1
    assert "-  replicas: 2\n+  replicas: 3" in diff.stdout
    dry = cli("apply", "-f", changed, "--dry-run")
    assert dry.stdout.strip() == "deployment/tiny configured (revision 2: tiny:1) (dry run)"
    cli("models", "alias", "tiny", "2", "prod")
    out = subprocess.run(
        [conveyor_exe(), "apply", "-f", "-", "--json"],
        input=TINY.format(replicas=3),
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout)["results"][0] | {"kind": 0} == {
        "kind": 0,
        "name": "tiny",
        "revision": 2,
        "changed": True,
        "model": "tiny:2",
    }

    listed = json.loads(cli("get", "deployments", "--json").stdout)["deployments"]
    assert [(d["name"], d["revision"], d["model"], d["replicas"]) for d in listed] == [
        ("tiny", 2, "tiny:2", {"desired": 3, "ready": 3, "total": 3})
    ]
    table = cli("get", "deployments").stdout
    assert "tiny:2" in table and "3/3" in table and "/v2/models/tiny" in table
    assert "prod→2" in cli("get", "models").stdout
    assert "tiny-2-3" in cli("get", "replicas").stdout
    described = cli("describe", "deployment", "tiny").stdout
    for text in (
        "deployment/tiny",
        "model: tiny@prod",
        "replicas: 3",
        "RevisionCreated",
        "tiny-2-1",
        "apply",
    ):
        assert text in described, text
    d = json.loads(cli("describe", "deployment", "tiny", "--json").stdout)
    assert [r["model"] for r in d["revisions"]] == ["tiny:1", "tiny:2"] and len(d["instances"]) == 3
    history = json.loads(cli("history", "tiny", "--json").stdout)["revisions"]
    assert [(h["revision"], h["change_cause"]) for h in history] == [(1, "apply"), (2, "apply")]
    ends = json.loads(cli("endpoints", "--json").stdout)
    assert ends["endpoints"][0]["name"] == "tiny" and ends["endpoints"][0]["url"] is None


def test_scale_rollback_and_delete(cli: CliRunner, api: str, tmp_path: Path) -> None:
    cli("apply", "-f", write(tmp_path, TINY.format(replicas=1)))
    assert (
        cli("scale", "tiny", "--replicas", "4").stdout.strip() == "deployment/tiny scaled to 4 (revision 2)"
    )
    assert "unchanged" in cli("scale", "tiny", "--replicas", "4").stdout
    out = cli("rollback", "tiny").stdout.strip()
    assert out == "deployment/tiny rolled back to the previous revision (now revision 3: tiny:1)"
    assert json.loads(cli("rollback", "tiny", "--to-revision", "2", "--json").stdout)["revision"] == 4
    history = cli("history", "tiny").stdout
    assert "scale to 4" in history and "rollback to 1" in history and "rollback to 2" in history
    assert cli("delete", "deployment", "tiny").stdout.strip() == "deployment/tiny deleted"
    assert "No deployments" in cli("get", "deployments").stdout
    gone = cli("describe", "deployment", "tiny", check=False)
    assert (gone.returncode, gone.stderr.strip()) == (3, "error: deployment 'tiny' not found")


def test_bad_inputs_get_one_line_errors_and_their_exit_codes(
    cli: CliRunner, api: str, tmp_path: Path
) -> None:
    bad = cli(
        "apply",
        "-f",
        write(tmp_path, TINY.format(replicas="-1").replace("tiny@", "tiny"), "bad.yaml"),
        check=False,
    )
    assert bad.returncode == 2
    assert "bad.yaml:6: spec.model: 'tinyprod' names no version" in bad.stderr
    assert "bad.yaml:7: spec.replicas: must be >= 0, got -1" in bad.stderr
    syntax = cli("apply", "-f", write(tmp_path, "metadata: [\n", "syntax.yaml"), check=False)
    assert syntax.returncode == 2 and "syntax.yaml:2:" in syntax.stderr and "invalid YAML" in syntax.stderr

    unknown = cli(
        "apply", "-f", write(tmp_path, TINY.format(replicas=1).replace("tiny@prod", "nosuch:1")), check=False
    )
    assert unknown.returncode == 3
    assert unknown.stderr.strip() == "error: deployment 'tiny': model 'nosuch' not found"

    cli("apply", "-f", write(tmp_path, AUTO, "auto.yaml"))
    auto = cli("scale", "auto", "--replicas", "2", check=False)
    assert auto.returncode == 4 and "is autoscaled (1..3 replicas)" in auto.stderr
    negative = cli("scale", "auto", "--replicas", "-1", check=False)
    assert (
        negative.returncode == 2 and "replicas: Input should be greater than or equal to 0" in negative.stderr
    )


def test_a_control_plane_that_is_not_running_is_exit_7(cli: CliRunner, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = cli("get", "deployments", "--url", url, check=False)
    assert out.returncode == 7
    assert out.stderr.strip() == (
        f"error: control plane not reachable at {url}: start it with `conveyor up` (or set CONVEYOR_URL)"
    )
    assert (
        cli("apply", "-f", write(tmp_path, TINY.format(replicas=1)), "--url", url, check=False).returncode
        == 7
    )
