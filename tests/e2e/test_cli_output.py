"""What the CLI prints, read as a user or a script reads it: real ``conveyor`` processes whose stdout is a
pipe (no terminal, no COLUMNS), so nothing here depends on the width of the terminal the tests run in."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.homes import register
from tests.fixtures.processes import REPO, ProcessGroup, conveyor_exe, output_of
from tests.fixtures.stack import UpStack

# Typer's labels for Python annotations; a user reads TEXT, INTEGER, PATH or nothing (a flag).
PYTHON_TYPES = re.compile(r"<(bool|str|int|float|path|int range|float range)>|list\[")
LONG_NAME = "iris-classifier-with-a-long-name"
LONG_ALIAS = "production-candidate-for-the-spring-release"


def piped_env(home: Path) -> dict[str, str]:
    """The environment of a script: no CONVEYOR_ settings of the caller's and no COLUMNS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_") and k != "COLUMNS"}
    env["CONVEYOR_HOME"] = str(home)
    return env


def piped(env: dict[str, str], *args: str) -> str:
    """``conveyor ARGS`` with stdout a pipe; its output, after checking it exited 0."""
    proc = subprocess.run(
        [conveyor_exe(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # stdout: a pipe
    )
    assert proc.returncode == 0, f"conveyor {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize(
    "command", [[], ["models", "register"], ["serve"], ["up"], ["get", "deployments"], ["predict"]]
)
def test_help_names_no_python_types(tmp_path: Path, command: list[str]) -> None:
    out = piped(piped_env(tmp_path / "home"), *command, "--help")
    assert not PYTHON_TYPES.search(out), out
    assert "--help" in out


def test_help_labels_values_as_a_user_reads_them(tmp_path: Path) -> None:
    out = piped(piped_env(tmp_path / "home"), "serve", "--help")
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ --")}
    assert "INTEGER" in lines["--port"] and "0<=x<=65535" in lines["--port"], lines["--port"]
    assert "PATH" in lines["--sample"], lines["--sample"]
    assert "TEXT" in lines["--host"], lines["--host"]
    assert "Allow pickle" in lines["--trust-pickle"] and "BOOL" not in lines["--trust-pickle"].upper()


def test_generated_cli_reference_names_no_python_types() -> None:
    text = (REPO / "docs" / "cli.md").read_text()
    assert not PYTHON_TYPES.search(text), PYTHON_TYPES.findall(text)[:5]


def test_piped_tables_are_not_cut_at_80_columns(tmp_path: Path, iris_files: dict[str, Path]) -> None:
    env = piped_env(tmp_path / "home")
    register(tmp_path / "home", LONG_NAME, iris_files["skops"], aliases=[LONG_ALIAS])
    out = piped(env, "models", "list")
    assert LONG_NAME in out and f"{LONG_ALIAS}→1" in out, out
    assert "…" not in out, out
    row = next(line for line in out.splitlines() if LONG_NAME in line)
    assert LONG_ALIAS in row, out  # on the model's own line, not wrapped onto the next


@pytest.fixture
def processes_up(tmp_path: Path) -> Iterator[tuple[ProcessGroup, Path]]:
    group = ProcessGroup()
    try:
        yield group, tmp_path / "home"
    finally:
        group.stop_all()


def test_up_and_get_deployments_print_each_url_once_and_whole(
    processes_up: tuple[ProcessGroup, Path], iris_files: dict[str, Path], tmp_path: Path
) -> None:
    group, home = processes_up
    env = piped_env(home)
    register(home, LONG_NAME, iris_files["skops"], aliases=["production"])
    spec = tmp_path / "iris.yaml"
    spec.write_text((REPO / "examples" / "iris.yaml").read_text().replace("iris@", f"{LONG_NAME}@"))
    stack = UpStack(group, env, home)
    try:
        stack.start("-f", str(spec))
        up_out = output_of(stack.proc) if stack.proc is not None else ""
        infer_url = f"{stack.gateway_url}/v2/models/iris/infer"
        # One announcement per URL; each URL on one line, whole.
        assert len(re.findall(rf"{re.escape(stack.gateway_url)}(?![\d/])", up_out)) == 1, up_out
        assert infer_url in up_out and "…" not in up_out, up_out
        assert f"{stack.api_url}/docs" in up_out, up_out

        listing = stack.cli("get", "deployments")
        assert listing.stdout.count(infer_url) == 1, listing.stdout
        assert LONG_NAME in listing.stdout and "…" not in listing.stdout, listing.stdout
    finally:
        stack.stop()
