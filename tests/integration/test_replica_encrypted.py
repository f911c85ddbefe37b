"""A replica process reads an encrypted blob of the artifact store with the key from its environment; without
the key, with another key or with a bad one it exits 5 before serving, with one line saying so."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.registry import LocalArtifactStore
from conveyor.security.encryption import cipher_from
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import free_port

KEY = base64.b64encode(os.urandom(32)).decode()


def launch(blob: Path, sha256: str, key: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    if key is not None:
        env["CONVEYOR_ARTIFACT_KEY"] = key
    # --sha256 for another model: with the right key the model loads, then the launcher stops (exit 1).
    cmd = [sys.executable, "-m", "conveyor.server", "--port", str(free_port()), "--model", f"m:1={blob}"]
    cmd += ["--sha256", f"m:1={sha256}", "--sha256", f"other:1={sha256}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, str]:
    model = build_logreg(tmp_path / "m.onnx")
    store = LocalArtifactStore(tmp_path / "artifacts", cipher_from(KEY, None))
    sha256, _ = store.put_file(model)
    return store.location(sha256), sha256


def test_the_key_in_the_environment_decrypts_and_the_model_loads(blob: tuple[Path, str]) -> None:
    out = launch(*blob, KEY)
    assert out.returncode == 1 and "--sha256 for a model not given with --model: other:1" in out.stderr


@pytest.mark.parametrize(
    ("key", "says"),
    [
        (None, "is encrypted (artifact key "),
        (base64.b64encode(os.urandom(32)).decode(), "but the key set is"),
        ("nope", "error: CONVEYOR_ARTIFACT_KEY must be base64 of 32 bytes"),
    ],
    ids=["no-key", "another-key", "bad-key"],
)
def test_without_the_right_key_it_exits_5_with_one_line(
    blob: tuple[Path, str], key: str | None, says: str
) -> None:
    out = launch(*blob, key)
    assert out.returncode == 5, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], out.stderr
    if key != "nope":
        assert lines[0].startswith(f"error: model m:1: artifact {blob[0]} ")
