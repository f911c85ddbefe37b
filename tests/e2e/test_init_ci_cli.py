"""`conveyor init ci`: the shell steps of the written pipelines, run for real against a local registry as the
CI would run them — GitHub's steps with bash -eo pipefail and its GITHUB_ENV file, GitLab's jobs with their
dotenv reports — register, optimize (an MLP quantized; a tree model's refusal, exit 6, releases it as
registered) and validate pass the ref on from --json; the rollout step fails when no control plane answers."""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.e2e.conftest import CliRunner
from tests.fixtures.processes import VENV_BIN, free_port

# Generous bounds: the pipeline's plumbing is under test here, not this busy machine's latency.
GATES = "performance: {seconds: 3, maxP99Ms: 5000, maxP50Increase: 100}\nstability: {seconds: 2}\n"


def _env(cli_env: dict[str, str], repo: Path, extra: dict[str, str]) -> dict[str, str]:
    """The runner's environment: Conveyor on PATH (the install step is what CI does instead)."""
    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**cli_env, "PATH": path, "CI": "true", **extra}


def _bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # GitHub's `run:` shell on Linux; GitLab's shell executor also stops at the first failing line
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _dotenv(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A model repository: an MLP (weights int8 can shrink) and a logistic regression (none)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from skops.io import dump

    d = tmp_path / "repo"
    (d / "models").mkdir(parents=True)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = (x[:, :2].sum(axis=1) > 0).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=30, random_state=0).fit(x, y)
    dump(mlp, d / "models" / "mlp.skops")
    dump(LogisticRegression().fit(x, y), d / "models" / "linear.skops")
    np.save(d / "models" / "sample.npy", x[:100])
    (d / "gates.yaml").write_text(GATES)
    return d


@pytest.mark.slow  # two validations with their servers: about a minute on 2 cores
def test_the_github_steps_register_quantize_validate_and_stop_at_an_unreachable_rollout(
    cli: CliRunner, cli_env: dict[str, str], repo: Path
) -> None:
    init = ("init", "ci", "--github", "--model", "mlp", "--file", "models/mlp.skops", "--max-drift", "0.5")
    cli(*init, "-o", str(repo / "wf.yml"))
    workflow: dict[str, Any] = yaml.safe_load((repo / "wf.yml").read_text())
    github_env = repo.parent / "github_env"
    github_env.touch()
    env = _env(
        cli_env,
        repo,
        {
            **{k: str(v) for k, v in workflow["env"].items() if not str(v).startswith("${{")},
            "REGISTER_ARGS": "--sample models/sample.npy",
            "VALIDATE_ARGS": "--gates gates.yaml",
            "CONVEYOR_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
            "CONVEYOR_TOKEN": "unused",
            "GITHUB_ENV": str(github_env),
        },
    )
    ran = {}
    for step in workflow["jobs"]["release"]["steps"]:
        if "run" not in step or step["id"] == "install":
            continue
        ran[step["id"]] = proc = _bash(step["run"], {**env, **_dotenv(github_env)}, repo)
        if proc.returncode != 0:
            break
    assert list(ran) == ["register", "optimize", "validate", "rollout"]
    for step in ("register", "optimize", "validate"):
        assert ran[step].returncode == 0, f"{step}: {ran[step].stdout}\n{ran[step].stderr}"
    assert ran["register"].stdout == "registered mlp:1\n"
    assert ran["optimize"].stdout == "quantized: mlp:2\n", ran["optimize"].stderr
    assert github_env.read_text() == "MODEL_REF=mlp:1\nMODEL_REF=mlp:2\n"  # the later line wins, as in GitHub
    validated = json.loads((repo / "validate.json").read_text())
    assert validated["passed"] is True and (repo / "validate-report.html").exists()
    assert json.loads(cli("models", "show", "mlp:2", "--json").stdout)["tags"]["validated"] == "true"
    assert ran["rollout"].returncode == 7  # unavailable: the job fails, nothing rolled out
    assert "error:" in ran["rollout"].stderr


@pytest.mark.slow
def test_the_gitlab_jobs_release_a_model_int8_cannot_shrink_as_registered(
    cli: CliRunner, cli_env: dict[str, str], repo: Path
) -> None:
    cli(
        "init",
        "ci",
        "--gitlab",
        "--model",
        "linear",
        "--file",
        "models/linear.skops",
        "-o",
        str(repo / "ci.yml"),
    )
    pipeline: dict[str, Any] = yaml.safe_load((repo / "ci.yml").read_text())
    env = _env(
        cli_env,
        repo,
        {
            **{k: str(v) for k, v in pipeline["variables"].items()},
            "REGISTER_ARGS": "--sample models/sample.npy",
            "VALIDATE_ARGS": "--gates gates.yaml",
            "CI_PROJECT_DIR": str(repo),
        },
    )
    passed_on: dict[str, str] = {}
    for job in ("register", "optimize", "validate"):
        spec = pipeline[job]
        proc = _bash("\n".join(spec["script"]), {**env, **passed_on}, repo)
        assert proc.returncode == 0, f"{job}: {proc.stdout}\n{proc.stderr}"
        report = spec.get("artifacts", {}).get("reports", {}).get("dotenv")
        if report:
            passed_on.update(_dotenv(repo / report))
    assert passed_on == {"REGISTERED_REF": "linear:1", "RELEASE_REF": "linear:1"}
    assert json.loads((repo / "validate.json").read_text())["passed"] is True
    assert [m["latest_version"] for m in json.loads(cli("models", "list", "--json").stdout)] == [1]
