"""Which model version a command means, on a real `conveyor up -f examples/iris.yaml` (issue 10, items 2-3):
`diff` sees an alias move, `predict` says which version answered and from where, `rollback` says what the
next apply of a file naming the alias will do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup
from tests.fixtures.stack import UpStack

pytestmark = pytest.mark.timeout(300)
SPEC = str(Path(__file__).resolve().parents[2] / "examples" / "iris.yaml")
ROW = "[[5.1, 3.5, 1.4, 0.2]]"


@pytest.fixture
def stack(cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    """`conveyor up -f examples/iris.yaml` serving iris:1 (the production alias) on two replicas; iris:2 is
    registered but not deployed."""
    up = UpStack(processes, cli_env, Path(cli_env["CONVEYOR_HOME"]))
    up.cli(
        "models", "register", "iris", str(build_logreg(tmp_path / "v1.onnx", seed=1)), "--alias", "production"
    )
    up.cli("models", "register", "iris", str(build_logreg(tmp_path / "v2.onnx", seed=2)))
    try:
        up.start("-f", SPEC)
        assert up.serving("iris", "1", 2)
        yield up
    finally:
        up.stop()


def test_diff_shows_an_alias_move_as_a_model_change_with_exit_1(stack: UpStack) -> None:
    same = stack.cli("diff", "-f", SPEC)
    assert (same.returncode, same.stdout) == (0, "")

    stack.cli("models", "alias", "iris", "2", "production")
    moved = stack.cli("diff", "-f", SPEC, check=False)
    assert moved.returncode == 1, moved.stdout + moved.stderr
    assert moved.stdout.strip() == "deployment/iris: model: iris@production (iris:1 → iris:2)"

    as_json = stack.cli("diff", "-f", SPEC, "--json", check=False)
    assert as_json.returncode == 1, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["differs"] is True
    (d,) = answer["deployments"]
    assert (d["name"], d["changed"], d["spec_changed"], d["model_changed"]) == ("iris", True, False, True)
    assert (d["ref"], d["live_model"], d["model"], d["next_revision"]) == (
        "iris@production",
        "iris:1",
        "iris:2",
        2,
    )
    assert len(d["digest"]) == 64 and d["digest"] != d["live_digest"]

    # what diff announced is what apply does
    assert "configured (revision 2: iris:2)" in stack.cli("apply", "-f", SPEC).stdout
    assert stack.cli("diff", "-f", SPEC).returncode == 0


def test_predict_says_which_version_answered_and_from_where(stack: UpStack) -> None:
    stack.cli("models", "alias", "iris", "2", "production")
    local = stack.cli("predict", "iris", "--data", ROW)
    home = stack.env["CONVEYOR_HOME"]
    assert f"answered by iris:2 (in-process from the registry at {home}; no server asked)" in local.stderr
    # the control plane runs a deployment named iris on another version: one line says so
    assert "note: deployment/iris serves iris:1" in local.stderr
    assert f"--url {stack.gateway_url}" in local.stderr

    local_json = json.loads(stack.cli("predict", "iris", "--data", ROW, "--json").stdout)
    assert local_json["model_version"] == "2"
    assert local_json["answered_by"] == {
        "model": "iris:2",
        "source": "in-process",
        "home": home,
        "url": None,
        "deployment": {"name": "iris", "model": "iris:1"},
    }

    remote = stack.cli("predict", "iris", "--url", stack.gateway_url, "--data", ROW)
    assert f"answered by iris:1 (server {stack.gateway_url})" in remote.stderr
    assert "note:" not in remote.stderr
    remote_json = json.loads(
        stack.cli("predict", "iris", "--url", stack.gateway_url, "--data", ROW, "--json").stdout
    )
    assert remote_json["answered_by"] == {
        "model": "iris:1",
        "source": "server",
        "home": None,
        "url": stack.gateway_url,
        "deployment": None,
    }


def test_rollback_says_the_next_apply_rolls_forward_while_the_alias_points_ahead(stack: UpStack) -> None:
    stack.cli("models", "alias", "iris", "2", "production")
    stack.cli("apply", "-f", SPEC, "--wait", "--timeout", "120")
    assert stack.serving("iris", "2", 2)

    out = stack.cli("rollback", "iris")
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "deployment/iris rolled back to the previous revision (now revision 3: iris:1)"
    note = " ".join(line.strip() for line in lines[1:])
    assert "note: iris@production now points at iris:2" in note
    assert "the next `conveyor apply -f` of a file naming iris@production rolls forward to iris:2" in note
    assert "conveyor models alias iris 1 production" in note

    again = json.loads(stack.cli("rollback", "iris", "--to-revision", "1", "--json").stdout)
    assert again["model"] == "iris:1" and again["changed"] is False
    assert again["next_apply"] == {"ref": "iris@production", "model": "iris:2"}

    stack.cli("models", "alias", "iris", "1", "production")
    back = " ".join(stack.cli("rollback", "iris", "--to-revision", "2").stdout.split())
    assert "(now revision 4: iris:2)" in back
    assert "note: iris@production now points at iris:1" in back and "rolls back to iris:1" in back
    assert "conveyor models alias iris 2 production" in back
