"""Mistyped commands and options: one error line naming the problem and the help to read, exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import __version__


def conveyor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor.cli.main", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["modelz"], "error: No such command 'modelz'. Did you mean 'models'? (see 'conveyor -h')"),
        (["models", "list", "--bogus"], "error: No such option: --bogus (see 'conveyor models list -h')"),
        (["scale"], "error: Missing argument 'name'. (see 'conveyor scale -h')"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = conveyor(*args)
    assert done.returncode == 2
    assert done.stderr.strip() == message
    assert "unexpected" not in done.stderr and "Traceback" not in done.stderr


def test_no_arguments_prints_the_help() -> None:
    done = conveyor()
    assert done.returncode == 2  # click's convention for a command that needs a subcommand
    assert "Commands" in done.stdout and "apply" in done.stdout
    assert "error" not in done.stderr


def test_version_flag_and_command() -> None:
    assert conveyor("--version").stdout.strip() == __version__
    assert conveyor("version").stdout.strip() == __version__


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["serve", "m.onnx", "--port"], "--port"),
        (["server", "--api-port"], "--api-port"),
        (["gateway", "--port"], "--port"),
    ],
)
def test_a_port_in_use_is_one_line_before_anything_starts(args: list[str], flag: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = conveyor(*args, str(port))
    assert done.returncode == 7
    assert done.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port} ({flag}): Address already in use"


@pytest.mark.parametrize("name", ["x?y=1", "a/b", "../x", "Big"])
def test_a_deployment_name_that_is_no_name_is_refused_before_any_request(name: str) -> None:
    done = conveyor("scale", name, "-r", "1", "--url", "http://127.0.0.1:9")  # nothing listens there
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: Invalid value for 'name': invalid name {name!r}: use at most 63")


def test_a_setting_with_a_bad_value_is_one_line_naming_it(tmp_path: Path) -> None:
    env = {**os.environ, "CONVEYOR_HOME": str(tmp_path), "CONVEYOR_ACCESS_LOG_SAMPLE": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "conveyor.cli.main", "models", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: invalid setting CONVEYOR_ACCESS_LOG_SAMPLE: Input should be less than or equal to 1"
    )


def test_an_error_message_is_printed_as_written_not_as_rich_markup() -> None:
    done = conveyor("models", "register", "m", "/nonexistent/[otel]/model.onnx")
    assert done.returncode != 0 and "[otel]" in done.stderr and "Traceback" not in done.stderr
