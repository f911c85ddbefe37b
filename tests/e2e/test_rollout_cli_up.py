"""`conveyor rollout` against a real `conveyor up` (its rollout controller, replica processes): apply --wait
hands over to the rollout, pause / resume / abort / promote answer in one line, status --watch exits by the
outcome, history lists both rollouts, and a command with nothing to act on is one line and exit 4."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.processes import ProcessGroup
from tests.fixtures.stack import UpStack, versions_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def spec(model: str) -> str:
    """clf running ``model``; a canary with a long interval: no check decides anything during the test."""
    rollout = {"strategy": "canary", "steps": [10, 50, 100], "interval": "5m", "progressDeadline": "30m"}
    doc = {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "clf"},
        "spec": {"model": model, "replicas": 1, "rollout": rollout},
    }
    return str(yaml.safe_dump(doc))


@pytest.fixture
def stack(cli_env: dict[str, str], processes: ProcessGroup, tmp_path: Path) -> Iterator[UpStack]:
    yield from versions_stack(processes, cli_env, tmp_path)


def status(stack: UpStack) -> dict[str, Any]:
    return json.loads(stack.cli("rollout", "status", "clf", "--json").stdout)  # type: ignore[no-any-return]


def fails(stack: UpStack, *args: str) -> tuple[int, str]:
    out = stack.cli(*args, check=False)
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    return out.returncode, out.stderr.strip()


def test_rollout_commands_steer_a_real_rollout(stack: UpStack, tmp_path: Path) -> None:
    first, second = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    first.write_text(spec("clf:1"))
    second.write_text(spec("clf:2"))
    stack.start("-f", str(first))
    stack.wait(lambda: stack.serving("clf", "1", 1), what="clf:1 serving")

    applied = stack.cli("apply", "-f", str(second), "--wait", "--timeout", "120").stdout.splitlines()
    assert applied[-1] == "rollout 1 started: conveyor rollout status clf --watch"
    described = stack.cli("describe", "deployment", "clf").stdout
    assert "rollout    1 (canary) to clf:2: progressing at step 1; conveyor rollout status clf" in described

    paused = stack.cli("rollout", "pause", "clf").stdout.strip()
    assert paused.startswith("rollout 1 of deployment/clf paused at step 1 (10% of requests to clf:2)")
    assert status(stack)["rollout"]["phase"] == "paused"
    resumed = stack.cli("rollout", "resume", "clf").stdout.strip()
    assert resumed == "rollout 1 of deployment/clf progressing: step 1 (10% of requests to clf:2)"
    code, line = fails(stack, "rollout", "approve", "clf")
    assert code == 4 and "nothing waits for approval" in line

    aborted = stack.cli("rollout", "abort", "clf").stdout.strip()
    assert aborted.startswith("rollout 1 of deployment/clf rolled back: all traffic to clf:1")
    watched = stack.cli("rollout", "status", "clf", "--watch", check=False)
    assert watched.returncode == 1
    assert watched.stdout.splitlines()[-1].startswith("rollout 1 of deployment/clf rolled back: aborted by")
    code, line = fails(stack, "rollout", "pause", "clf")
    assert (code, line) == (4, "error: deployment 'clf' has no rollout in progress")

    started = stack.cli("rollout", "start", "clf", "--to", "clf:2").stdout.strip()
    assert started.startswith("rollout 2 of deployment/clf started: canary, clf:1 → clf:2")
    promoted = stack.cli("rollout", "promote", "clf").stdout.strip()
    assert promoted == (
        "rollout 2 of deployment/clf promoted: clf:2 takes all traffic (skipping the analysis)"
    )
    assert stack.cli("rollout", "status", "clf", "--watch", "--json", check=False).returncode == 0
    stack.wait(lambda: stack.serving("clf", "2", 1), what="clf:2 alone")

    rows = [" ".join(line.split()) for line in stack.cli("rollout", "history", "clf").stdout.splitlines()]
    rows = [r for r in rows if r.startswith("│")]  # the table's rows: newest first
    assert rows[0].startswith("│ 2 │ canary │ clf:1 → clf:2 │ promoted │"), rows
    assert rows[1].startswith("│ 1 │ canary │ clf:1 → clf:2 │ rolled back │"), rows
    assert rows[1].endswith("│ aborted by token:local-admin │"), rows
    listed = json.loads(stack.cli("rollout", "history", "clf", "--json").stdout)["rollouts"]
    assert sorted((r["number"], r["phase"]) for r in listed) == [(1, "rolled_back"), (2, "promoted")]
