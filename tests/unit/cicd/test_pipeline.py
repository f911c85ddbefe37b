"""`conveyor init ci`: the GitHub workflow and the GitLab pipeline parse as YAML, run their steps in order,
and every `conveyor` command line in them is accepted by the real CLI's parser (each option exists, each
value converts); the Python one-liners read the ref from --json output."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.exceptions import TyperException

from conveyor import errors
from conveyor.cicd import PipelineOptions, render, write
from conveyor.cli.app import app

OPTIONS = PipelineOptions(model="iris", file="models/iris.skops", deployment="iris-prod", max_drift=0.02)
SAMPLE_ENV = {
    "MODEL_REF": "iris:2",
    "REGISTERED_REF": "iris:1",
    "RELEASE_REF": "iris:2",
    "RUNNER_TEMP": "/tmp/runner",
    "CI_PROJECT_DIR": "/builds/p",
}
SHELL_OPERATORS = {">", ">>", "||", "&&", "|", ";"}


def _github() -> dict[Any, Any]:
    doc = yaml.safe_load(render("github", OPTIONS))
    assert isinstance(doc, dict)
    return doc


def _gitlab() -> dict[str, Any]:
    doc = yaml.safe_load(render("gitlab", OPTIONS))
    assert isinstance(doc, dict)
    return doc


def _scripts_github() -> list[str]:
    return [s["run"] for s in _github()["jobs"]["release"]["steps"] if "run" in s]


def _scripts_gitlab() -> list[str]:
    doc = _gitlab()
    lines = list(doc["default"]["before_script"])
    for job in doc.values():
        if isinstance(job, dict) and "script" in job:
            lines += job["script"]
    return lines


def conveyor_commands(script: str, env: dict[str, str]) -> list[list[str]]:
    """Each `conveyor ...` command of a shell script, its variables expanded (the *_ARGS ones to nothing, as
    the pipeline sets them) and cut at the first redirection or operator."""
    found = []
    for line in script.splitlines():
        line = line.strip()
        if not line.startswith("conveyor "):
            continue
        expanded = re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: env.get(m.group(1), ""), line)
        words = shlex.split(expanded)
        cut = next((i for i, w in enumerate(words) if w in SHELL_OPERATORS), len(words))
        found.append(words[1:cut])
    return found


def parse(args: list[str]) -> Any:
    """The context the real `conveyor` CLI builds for ``args``, down to the leaf command (nothing runs);
    Typer's usage errors (its own copy of click's) for an unknown command or option, or a bad value."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("conveyor", list(args))
    while hasattr(command, "resolve_command"):  # a group
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, rest = command.resolve_command(ctx, rest)
        assert name is not None and sub is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub
    return ctx


def test_the_github_workflow_runs_install_register_optimize_validate_rollout_in_order() -> None:
    doc = _github()
    steps = doc["jobs"]["release"]["steps"]
    assert [s.get("id") for s in steps if "run" in s] == [
        "install",
        "register",
        "optimize",
        "validate",
        "rollout",
    ]
    assert steps[0]["uses"].startswith("actions/checkout@") and steps[-1]["if"] == "always()"
    env = doc["env"]
    assert {k: env[k] for k in ("MODEL_NAME", "MODEL_FILE", "DEPLOYMENT", "MAX_DRIFT")} == {
        "MODEL_NAME": "iris",
        "MODEL_FILE": "models/iris.skops",
        "DEPLOYMENT": "iris-prod",
        "MAX_DRIFT": "0.02",
    }
    assert env["CONVEYOR_URL"] == "${{ secrets.CONVEYOR_URL }}"
    assert env["CONVEYOR_TOKEN"] == "${{ secrets.CONVEYOR_TOKEN }}"
    assert doc[True]["push"]["paths"] == ["models/iris.skops"]  # YAML 1.1 reads the key `on` as true
    for script in _scripts_github():
        assert "${{" not in script  # values reach the scripts as environment variables, never spliced in


def test_the_gitlab_pipeline_has_a_job_per_stage_passing_the_ref_on_as_dotenv() -> None:
    doc = _gitlab()
    assert doc["stages"] == ["register", "optimize", "validate", "rollout"]
    jobs = {name: job for name, job in doc.items() if isinstance(job, dict) and "stage" in job}
    assert [j["stage"] for j in jobs.values()] == doc["stages"]
    assert jobs["register"]["artifacts"]["reports"]["dotenv"] == "register.env"
    assert jobs["optimize"]["artifacts"]["reports"]["dotenv"] == "optimize.env"
    assert doc["variables"]["DEPLOYMENT"] == "iris-prod" and doc["default"]["tags"] == ["conveyor"]


@pytest.mark.parametrize("scripts", [_scripts_github, _scripts_gitlab], ids=["github", "gitlab"])
def test_every_conveyor_command_line_is_accepted_by_the_cli(scripts: Any) -> None:
    env = {
        **SAMPLE_ENV,
        "MODEL_NAME": "iris",
        "MODEL_FILE": "m.skops",
        "DEPLOYMENT": "d",
        "MAX_DRIFT": "0.02",
    }
    commands = [c for s in scripts() for c in conveyor_commands(s, env)]
    assert [c[:2] if c[0] in ("models", "rollout") else c[:1] for c in commands] == [
        ["models", "register"],
        ["optimize"],
        ["validate"],
        ["rollout", "start"],
        ["rollout", "status"],
    ]
    for args in commands:
        params = parse(args).params
        assert params.get("as_json") is True or args[:2] == ["rollout", "status"], args
    assert parse(commands[1]).params["max_drift"] == 0.02
    assert parse(commands[4]).params["watch"] is True
    with pytest.raises(
        TyperException, match=r"No such option: --max-drfit"
    ):  # the check would catch an option the CLI does not have
        parse(["optimize", "iris:1", "--max-drfit", "0.1"])


def test_the_ref_one_liners_read_register_and_optimize_json() -> None:
    lines = [ln for s in _scripts_github() for ln in s.splitlines() if "python -c" in ln]
    assert len(lines) == 2
    answers: list[dict[str, Any]] = [
        {"name": "iris", "version": 1, "sha256": "ab", "already_registered_as": []},
        {"registered": {"name": "iris", "version": 2}, "refused": None},
    ]
    for line, answer in zip(lines, answers, strict=True):
        code = shlex.split(line.split("$(", 1)[1].rstrip(")"))[2]
        out = subprocess.run(
            [sys.executable, "-c", code, "/dev/stdin"],
            input=json.dumps(answer),
            capture_output=True,
            text=True,
        )
        assert out.stdout.strip() == f"iris:{answer.get('version', 2)}", out.stderr


def test_write_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / ".github" / "workflows" / "conveyor.yml"
    write("github", OPTIONS, path)
    path.write_text("mine")
    with pytest.raises(errors.Conflict, match=r"conveyor.yml exists: --force overwrites it"):
        write("github", OPTIONS, path)
    assert path.read_text() == "mine"
    write("github", OPTIONS, path, force=True)
    assert path.read_text() == render("github", OPTIONS)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (PipelineOptions(model="my model"), r"--model 'my model': letters, digits"),
        (PipelineOptions(deployment="a;b"), r"--deployment 'a;b'"),
        (PipelineOptions(file='x".onnx'), r"--file 'x\"\.onnx': must be non-empty, without quotes"),
        (PipelineOptions(file="/abs/m.onnx"), r"a path inside the repository"),
        (PipelineOptions(package="conveyor $(id)"), r"--package"),
        (PipelineOptions(max_drift=0), r"--max-drift must be a number above zero"),
    ],
)
def test_values_that_would_break_the_yaml_or_the_shell_are_refused(
    options: PipelineOptions, message: str
) -> None:
    with pytest.raises(errors.InvalidInput, match=message):
        render("github", options)
