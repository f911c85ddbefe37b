"""`conveyor rollout start / status / history` against a real management API process (tests/fixtures/
api_server.py: the real API and registry, a stand-in for the replicas and no rollout controller, so a rollout
stays in its first step): what each prints, and every bad input as one line on stderr with its exit code."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import CliRunner
from tests.e2e.test_deployments_cli import TINY, api, tiny_home, write
from tests.unit.cli.test_rollouts import answer as rendered_answer

__all__ = [
    "api",
    "tiny_home",
]  # the management API fixture and its home, shared with the deployments' CLI tests


def test_start_status_and_history_of_a_rollout(cli: CliRunner, api: str, tmp_path: Path) -> None:
    cli("apply", "-f", write(tmp_path, TINY.format(replicas=1)))  # tiny@prod: tiny:1
    none = cli("rollout", "history", "tiny")
    assert none.stdout.strip() == "deployment/tiny has had no rollout"

    started = cli("rollout", "start", "tiny", "--to", "tiny:2")
    assert started.stdout.strip() == (
        "rollout 1 of deployment/tiny started: canary, tiny:1 → tiny:2 (revision 2); "
        "watch it: conveyor rollout status tiny --watch"
    )

    answer = json.loads(cli("rollout", "status", "tiny", "--json").stdout)
    fixture = rendered_answer()  # what the rendering's unit tests feed it: the API's shape, key for key
    assert set(answer) == set(fixture)
    for part in ("rollout", "state"):
        assert set(answer[part]) == set(fixture[part]), part
    assert set(answer["plan"][0]) == set(fixture["plan"][0])
    assert set(answer["versions"]) == {"1", "2"}
    assert (answer["rollout"]["number"], answer["rollout"]["phase"]) == (1, "progressing")
    assert [s["weight"] for s in answer["plan"]] == [10.0, 50.0, 100.0]  # canary's default steps

    shown = cli("rollout", "status", "tiny").stdout
    assert "deployment/tiny  rollout 1 (canary)  tiny:1 → tiny:2  progressing" in shown
    assert "step 1/3: 10%" in shown
    assert "[10%] › 50% › 100%" in shown
    assert "traffic  tiny:1 90% · tiny:2 10%" in shown

    listed = json.loads(cli("rollout", "history", "tiny", "--json").stdout)["rollouts"]
    assert [(r["number"], r["stableModel"], r["candidateModel"]) for r in listed] == [(1, "tiny:1", "tiny:2")]
    rows = [" ".join(line.split()) for line in cli("rollout", "history", "tiny").stdout.splitlines()]
    assert any(row.startswith("│ 1 │ canary │ tiny:1 → tiny:2 │ progressing │") for row in rows), rows


def test_bad_inputs_are_one_line_and_an_exit_code(cli: CliRunner, api: str, tmp_path: Path) -> None:
    def fails(*args: str) -> tuple[int, str]:
        out = cli("rollout", *args, check=False)
        assert out.stdout == ""
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        return out.returncode, out.stderr.strip()

    code, line = fails("status", "nosuch")
    assert code == 3 and line.startswith("error: ") and "nosuch" in line
    assert fails("history", "nosuch")[0] == 3
    cli("apply", "-f", write(tmp_path, TINY.format(replicas=1)))
    assert fails("status", "tiny") == (3, "error: deployment 'tiny' has no rollout")
    code, line = fails("start", "tiny", "--to", "tiny:9")
    assert code == 3 and "tiny" in line and "9" in line
    code, line = fails("start", "tiny", "--to", "tiny:1")  # what runs already
    assert code == 4 and "tiny:1" in line
    code, line = fails("start", "tiny", "--to", "tiny:2", "--strategy", "abTest")  # no spec.rollout.abTest
    assert code == 2 and line.startswith("error: deployment tiny: ")
    code, line = fails("start", "tiny", "--to", "tiny:2", "--strategy", "linear")
    assert code == 2 and "'linear' is not one of 'canary', 'blueGreen', 'shadow', 'abTest'" in line
    code, line = fails("status", "Not_A_Name")
    assert code == 2
