"""The demo (``make demo``) echoes each command it runs; a user pastes those lines into a shell."""

from __future__ import annotations

import importlib.util
import subprocess
from types import ModuleType

from tests.fixtures.processes import REPO


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conveyor_demo", REPO / "examples" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_echoed_predict_command_pastes_into_a_shell_as_the_same_arguments() -> None:
    args = ["predict", "iris", "--url", "http://127.0.0.1:8080", "--data", "[[6.3, 3.3, 6.0, 2.5]]"]
    line = load_demo().command_line(*args)
    # bash parses the echoed line; `conveyor` here is a function printing the arguments it was given.
    shell = "conveyor() { printf '%s\\0' \"$@\"; }\n" + line
    out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=10, check=True)
    assert out.stdout.split("\0")[:-1] == args, line
