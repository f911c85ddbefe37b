"""A running version's blob changed in the artifact store: no replica ever serves other bytes under its name.

The replica verifies the SHA-256 of the bytes it loads (``--sha256``) and refuses others (exit 5); the control
plane then records an ``ArtifactCorrupt`` event, shows the deployment's ``problem`` naming the version, starts
no more replicas of it, and the replicas that loaded good bytes keep answering.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

import conveyor
from conveyor.settings import Settings
from tests.e2e.conftest import CliRunner
from tests.e2e.test_up_under_load import BODY, register_version, stack, write_spec
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import free_port
from tests.fixtures.stack import UpStack

__all__ = ["stack"]  # the fixture: `conveyor up` over clf:1, stopped at teardown

pytestmark = pytest.mark.timeout(240)

X = np.array([[0.1, 0.2, 0.3, 0.4]] * 2, dtype=np.float32)  # what BODY sends


def probabilities(onnx: bytes) -> list[float]:
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    return [float(v) for v in session.run(["probabilities"], {"input": X})[0].ravel()]


def answer(stack: UpStack) -> tuple[str, list[float]]:
    url = f"{stack.gateway_url}/v2/models/clf/infer"
    r = httpx.post(url, content=BODY, timeout=10, headers=stack.headers)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    return str(r.json()["model_version"]), [float(v) for v in out["probabilities"]["data"]]


def blob(home: Path, sha256: str) -> Path:
    return home / "artifacts" / sha256[:2] / sha256[2:]


def sha_of(home: Path, ref: str) -> str:
    with conveyor.open_registry(Settings(home=home)) as registry:
        return registry.resolve(ref).sha256


def overwrite(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)  # the store leaves blobs read-only; whoever corrupts them does not care
    path.write_bytes(data)


def events(stack: UpStack, kind: str) -> list[dict[str, Any]]:
    return [e for e in stack.api("/deployments/clf/events")["events"] if e["kind"] == kind]


def kill_one_replica(stack: UpStack) -> dict[str, Any]:
    victim = stack.replicas("clf")[0]
    os.kill(victim["pid"], signal.SIGKILL)
    return victim


def start_clf_1(stack: UpStack, tmp_path: Path) -> list[float]:
    """`conveyor up` with 2 replicas of clf:1; returns clf:1's real probabilities for X."""
    stack.start("-f", write_spec(tmp_path, "clf:1", 2))
    stack.wait(lambda: stack.serving("clf", "1", 2), what="2 replicas of clf:1")
    return probabilities((tmp_path / "clf0.onnx").read_bytes())


def is_right(answer: tuple[str, list[float]], right: list[float]) -> bool:
    return answer[0] == "1" and bool(np.allclose(answer[1], right, atol=1e-5))


def answers_for(stack: UpStack, seconds: float) -> list[tuple[str, list[float]]]:
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        seen.append(answer(stack))
    return seen


def test_a_swapped_blob_is_refused_named_and_the_survivor_keeps_answering(
    stack: UpStack, tmp_path: Path
) -> None:
    right = start_clf_1(stack, tmp_path)
    other_model = build_logreg(tmp_path / "other.onnx", seed=7).read_bytes()
    others = probabilities(other_model)
    assert not np.allclose(right, others)
    assert is_right(answer(stack), right)

    sha = sha_of(stack.home, "clf:1")
    overwrite(blob(stack.home, sha), other_model)  # another valid ONNX model under clf:1's digest
    victim = kill_one_replica(stack)
    # One input, one answer: for 6 s after the kill (its replacement starts within 1 s and loads in about
    # as long; it served the other model's answers before), every answer is clf:1's real one.
    seen = answers_for(stack, 6.0)
    assert len(seen) > 20
    wrong_answers = [a for a in seen if not is_right(a, right)]
    assert not wrong_answers, (
        f"{len(wrong_answers)} of {len(seen)} answers were not clf:1's: {wrong_answers[:1]}"
    )

    corrupt = stack.wait(
        lambda: events(stack, "ArtifactCorrupt"), timeout=60, what="an ArtifactCorrupt event"
    )
    message = corrupt[0]["message"]
    assert "model clf:1" in message and f"expected sha256 {sha}" in message, message
    problem = stack.wait(lambda: stack.api("/deployments/clf")["problem"], what="a problem")
    assert problem.startswith("model clf:1: ") and f"expected sha256 {sha}, got " in problem, problem
    described = stack.cli("describe", "deployment", "clf").stdout
    assert "cannot run: model clf:1:" in described, described

    rows = stack.replicas("clf")
    assert [r["state"] for r in rows] == ["ready"] and victim["id"] not in {r["id"] for r in rows}, rows
    # No crash loop: the replica that refused is the only one started, and none is started after it.
    assert len(events(stack, "ArtifactCorrupt")) == 1
    assert stack.api("/deployments/clf")["replicas"]["total"] == 1

    # A restarted control plane finds the artifact corrupt itself, and keeps the survivor routed.
    epoch = stack.api("/health")["epoch"]
    os.kill(stack.control_plane_pid(), signal.SIGKILL)
    stack.wait(lambda: stack.api("/health")["epoch"] != epoch, timeout=60, what="a new control plane")
    stack.wait(lambda: stack.api("/deployments/clf")["problem"], what="the problem after the restart")
    assert stack.api("/deployments/clf")["problem"].startswith("model clf:1: ")
    seen = answers_for(stack, 3.0)
    assert all(is_right(a, right) for a in seen), seen[:3]
    assert [r["state"] for r in stack.replicas("clf")] == ["ready"]

    # The blob restored (here: the original bytes), the deployment heals: 2 replicas, no problem.
    overwrite(blob(stack.home, sha), (tmp_path / "clf0.onnx").read_bytes())
    stack.wait(lambda: stack.serving("clf", "1", 2), timeout=60, what="2 replicas again")
    assert stack.api("/deployments/clf")["problem"] is None


def test_a_truncated_running_blob_is_named_even_when_a_newer_revision_is_broken(
    stack: UpStack, tmp_path: Path
) -> None:
    right = start_clf_1(stack, tmp_path)
    register_version(stack, tmp_path, seed=1)  # clf:2
    sha1, sha2 = sha_of(stack.home, "clf:1"), sha_of(stack.home, "clf:2")
    # A corrupt new version first: its revision cannot run, clf:1 keeps running (this held before).
    overwrite(blob(stack.home, sha2), b"not what was registered")
    stack.cli("apply", "-f", write_spec(tmp_path, "clf:2", 2))
    stack.wait(lambda: "clf:2" in (stack.api("/deployments/clf")["problem"] or ""), what="clf:2's problem")

    # Then the running version's blob is truncated and one of its replicas dies.
    path = blob(stack.home, sha1)
    overwrite(path, path.read_bytes()[:200])
    kill_one_replica(stack)

    def names_clf_1() -> str | None:
        problem = stack.api("/deployments/clf")["problem"] or ""
        return problem if "model clf:1:" in problem else None

    problem = stack.wait(names_clf_1, timeout=60, what="a problem naming the running version clf:1")
    assert problem.startswith(f"running version model clf:1: artifact {sha1} is corrupt"), problem
    assert "revision 2: model clf:2:" in problem, problem
    corrupt = stack.wait(lambda: events(stack, "ArtifactCorrupt"), what="an ArtifactCorrupt event")
    assert "model clf:1" in corrupt[0]["message"], corrupt
    seen = answers_for(stack, 2.0)
    assert all(is_right(a, right) for a in seen), seen[:3]


@pytest.fixture
def tampered(cli: CliRunner, cli_env: dict[str, str], tmp_path: Path) -> str:
    """clf:1 registered, then its blob overwritten with another valid model; returns its sha256."""
    cli("models", "register", "clf", str(build_logreg(tmp_path / "clf.onnx")))
    home = Path(cli_env["CONVEYOR_HOME"])
    sha = sha_of(home, "clf:1")
    overwrite(blob(home, sha), build_logreg(tmp_path / "x.onnx", seed=3).read_bytes())
    return sha


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "clf:1", "--data", "[[0.1, 0.2, 0.3, 0.4]]"],
        ["serve", "clf:1"],
        ["serve", "clf:1", "--replicas", "2"],
    ],
    ids=["predict", "serve", "serve-2-replicas"],
)
def test_serve_and_predict_of_a_tampered_version_fail_with_one_line(
    tampered: str, cli: CliRunner, command: list[str]
) -> None:
    if command[0] == "serve":
        command = [*command, "--port", str(free_port())]
    out = cli(*command, check=False)
    assert out.returncode == 5, (out.stdout, out.stderr)  # data_loss
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(
        f"error: model clf:1: artifact {tampered} is corrupt: expected sha256 {tampered}"
    )
