"""Mistyped commands and options: one error line naming the problem and the help to read, exit 2."""

from __future__ import annotations

import socket
import subprocess
import sys

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
