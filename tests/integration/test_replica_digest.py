"""A replica process verifies the bytes it loads against ``--sha256`` and refuses others before serving."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import httpx

from conveyor.digests import EXIT_DATA_LOSS
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import free_port
from tests.fixtures.replica import running_replica


def launch(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "conveyor.server", "--port", str(free_port()), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_other_bytes_than_the_digest_exit_5_with_one_line_naming_the_model(tmp_path: Path) -> None:
    model = build_logreg(tmp_path / "m.onnx")
    registered = hashlib.sha256(b"the bytes that were registered").hexdigest()
    got = hashlib.sha256(model.read_bytes()).hexdigest()
    out = launch("--model", f"m:3={model}", "--sha256", f"m:3={registered}")
    assert out.returncode == EXIT_DATA_LOSS == 5, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: model m:3: artifact {model} is corrupt: expected sha256 {registered}, got {got}"
    ]


def test_a_missing_model_file_exits_5_with_one_line(tmp_path: Path) -> None:
    out = launch("--model", f"m:3={tmp_path / 'gone.onnx'}", "--sha256", f"m:3={'a' * 64}")
    assert out.returncode == 5
    assert out.stderr.strip().splitlines() == [
        f"error: model m:3: cannot read {tmp_path / 'gone.onnx'}: No such file or directory"
    ]


def test_the_right_digest_serves(tmp_path: Path) -> None:
    model = build_logreg(tmp_path / "m.onnx")
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    with running_replica({"m:3": model}, "--sha256", f"m:3={sha}") as url:
        assert httpx.get(f"{url}/v2/models/m/versions/3/ready").status_code == 200


def test_a_digest_for_no_given_model_is_a_usage_error(tmp_path: Path) -> None:
    model = build_logreg(tmp_path / "m.onnx")
    out = launch("--model", f"m:3={model}", "--sha256", f"m:4={'a' * 64}")
    assert out.returncode == 1 and "--sha256 for a model not given with --model: m:4" in out.stderr
