"""A full disk, for real (a small tmpfs filled by a file): every write that fails says "disk full" in one
line with exit 10 (HTTP 507 from the management API), removes what it half-wrote, and leaves the registry as
it was: no orphan blob, no temp file, no partial backup, no ``run/replicas.tmp``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import conveyor
from conveyor.registry.backup import backup
from conveyor.settings import Settings
from tests.fixtures.homes import register
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup, conveyor_exe, output_of
from tests.fixtures.small_fs import SmallFs, small_fs
from tests.fixtures.stack import UpStack

__all__ = ["small_fs"]  # the fixture, imported to be found by pytest
pytestmark = pytest.mark.timeout(300)
DISK_FULL_EXIT = 10
# A Deployment as the API takes it; as JSON (a subset of YAML) it is also the file `apply -f` reads.
DEPLOYMENT = {
    "apiVersion": "conveyor.dev/v1",
    "kind": "Deployment",
    "metadata": {"name": "clf"},
    "spec": {"model": "clf:1", "replicas": 1},
}


def padded_model(path: Path, kib: int, seed: int) -> Path:
    """An ONNX model of about ``kib`` KiB: y = x + c, with c random (so distinct seeds are distinct blobs)."""
    n = kib * 256
    c = np.random.default_rng(seed).random(n, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"])],
        "padded",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        initializer=[numpy_helper.from_array(c, "c")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([conveyor_exe(), *args], env=env, capture_output=True, text=True, timeout=120)


def assert_disk_full(proc: subprocess.CompletedProcess[str]) -> str:
    """One ``error: disk full: ...`` line on stderr and exit 10; returns the line."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == DISK_FULL_EXIT, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: disk full: "), proc.stderr
    return lines[0]


def blobs(home: Path) -> set[str]:
    """What the artifact store holds: each blob (``ab/cdef...``) as its digest, any other file (a temp file
    ``.tmp-*``) by its name."""
    root = home / "artifacts"
    return {"".join(p.relative_to(root).parts) for p in root.rglob("*") if p.is_file()}


def temp_files(folder: Path) -> list[str]:
    """Temp files left in ``folder``: ``replicas.tmp`` as before, ``.NAME.tmp-*`` as written now."""
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


@pytest.fixture
def env(small_fs: SmallFs) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_HOME"] = str(small_fs.root / "home")
    env["COLUMNS"] = "200"
    return env


def test_register_on_a_full_disk_says_so_and_leaves_no_orphan_blob(
    small_fs: SmallFs, env: dict[str, str], tmp_path: Path
) -> None:
    home = Path(env["CONVEYOR_HOME"])
    kept = {register(home, "m", build_logreg(tmp_path / "m.onnx")).sha256}
    failures: list[str] = []
    # From room to spare down to none, in 12 KiB steps (three tmpfs pages): each register stores a new blob,
    # then writes its row; somewhere the row no longer fits (the blob did: about 20 KiB of free space, so
    # one step or two land there), further down the blob does not fit either.
    for leave in range(60, -1, -12):
        small_fs.fill(leave_kib=leave)
        path = build_logreg(tmp_path / f"m{leave}.onnx", seed=leave + 1)
        proc = run(env, "models", "register", "m", str(path), "--json")
        if proc.returncode == 0:
            kept.add(json.loads(proc.stdout)["sha256"])
        else:
            failures.append(assert_disk_full(proc))
        assert blobs(home) == kept, f"with {leave} KiB free: {proc.stderr}"
    assert any("database or disk is full" in f for f in failures), failures  # the row, after the blob

    # A blob bigger than the free space: the half-written temp file goes too.
    small_fs.fill(leave_kib=64)
    big = run(env, "models", "register", "big", str(padded_model(tmp_path / "big.onnx", 256, 0)))
    assert "cannot write an artifact" in assert_disk_full(big)
    assert blobs(home) == kept

    small_fs.free()
    listed = json.loads(run(env, "models", "list", "m", "--json").stdout)
    assert {v["sha256"] for v in listed} == kept
    again = run(env, "models", "register", "m", str(tmp_path / "m0.onnx"), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["version"] == len(kept) + 1


def test_restore_on_a_full_disk_leaves_no_blob_and_an_empty_registry(
    small_fs: SmallFs, env: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "source"  # the registry backed up, built in-process: the restore is the test
    for i in range(3):
        register(source, f"p{i}", padded_model(tmp_path / f"p{i}.onnx", 6, i))
    archive = tmp_path / "registry.tar"
    with conveyor.open_registry(Settings(home=source)) as registry:
        backup(registry, archive)
    home = Path(env["CONVEYOR_HOME"])
    with conveyor.open_registry(Settings(home=home)):
        pass  # an empty registry on the small disk

    # From no room up, in 12 KiB steps, until the restore fits: it fails opening the database, then while
    # storing the blobs (some stored already: over about 20 KiB of free space, so one step or two land
    # there), then writing the rows (every blob stored); each time the blobs it stored go again, and the
    # registry stays empty (or the last restore would be refused).
    failures: list[str] = []
    for leave in range(0, 400, 12):
        small_fs.fill(leave_kib=leave)
        proc = run(env, "restore", str(archive))
        if proc.returncode == 0:
            break
        failures.append(assert_disk_full(proc))
        assert blobs(home) == set(), f"with {leave} KiB free: {proc.stderr}"
    else:
        raise AssertionError(f"the restore never fitted: {failures[-1]}")
    assert any("cannot write an artifact" in f for f in failures), failures
    assert any("database or disk is full" in f for f in failures), failures
    small_fs.free()
    assert [m["name"] for m in json.loads(run(env, "models", "list", "--json").stdout)] == ["p0", "p1", "p2"]
    assert len(blobs(home)) == 3


def test_backup_to_a_full_disk_leaves_no_partial_file_and_the_old_backup_intact(
    small_fs: SmallFs, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_HOME"] = str(tmp_path / "home")  # the registry has room; the backup's disk has not
    target = small_fs.root / "backups" / "registry.tar"
    assert run(env, "backup", str(target)).returncode == 0
    old = target.read_bytes()
    register(Path(env["CONVEYOR_HOME"]), "big", padded_model(tmp_path / "big.onnx", 256, 0))
    small_fs.fill(leave_kib=64)
    line = assert_disk_full(run(env, "backup", str(target)))
    assert f"cannot write backup {target}" in line
    assert small_fs.files("backups") == ["registry.tar"] and target.read_bytes() == old


@pytest.fixture
def stack(env: dict[str, str], processes: ProcessGroup, tmp_path: Path) -> Iterator[UpStack]:
    up = UpStack(processes, env, Path(env["CONVEYOR_HOME"]))
    try:
        yield up
    finally:
        up.stop()


def test_up_on_a_full_home_is_one_line_and_leaves_no_temp_state(small_fs: SmallFs, stack: UpStack) -> None:
    small_fs.fill(leave_kib=0)
    args = ["up", "--port", str(stack.port), "--api-port", str(stack.api_port)]
    proc = run(stack.env, *args)
    assert "writ" in assert_disk_full(proc)
    assert temp_files(stack.home / "run") == []


def test_a_disk_that_fills_while_up_runs_stops_cleanly(small_fs: SmallFs, stack: UpStack) -> None:
    stack.start()
    small_fs.fill(leave_kib=0)
    assert stack.proc is not None
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=60) == 0, output_of(stack.proc)
    out = output_of(stack.proc)
    assert "Traceback" not in out and "disk full" in out, out
    run_dir = stack.home / "run"
    assert temp_files(run_dir) == []
    json.loads((run_dir / "replicas.json").read_text())  # the previous state, intact


def test_apply_on_a_full_disk_is_507_and_changes_nothing(
    small_fs: SmallFs, stack: UpStack, tmp_path: Path
) -> None:
    register(stack.home, "clf", build_logreg(tmp_path / "clf.onnx"))
    stack.env["CONVEYOR_LEADER_LEASE_S"] = "3"
    stack.start()
    spec = tmp_path / "clf.yaml"
    spec.write_text(json.dumps(DEPLOYMENT))
    small_fs.fill(leave_kib=0)
    assert "registry database" in assert_disk_full(stack.cli("apply", "-f", str(spec), check=False))
    # The leader cannot renew its lease on the full disk: it steps down, and refuses writes with that error,
    # not with "the leader is nobody yet".
    deadline = time.monotonic() + 60
    while httpx.get(f"{stack.api_url}/api/v1/health", timeout=10).json()["election"]["leader"]:
        assert time.monotonic() < deadline, "the leader never stepped down on the full disk"
        time.sleep(0.2)
    answer = httpx.post(
        f"{stack.api_url}/api/v1/apply", json={"documents": [DEPLOYMENT]}, timeout=30, headers=stack.headers
    )
    assert answer.status_code == 507 and answer.json()["error"].startswith("disk full: "), answer.text
    small_fs.free()
    assert stack.api("/deployments")["deployments"] == []
