"""The replica process: announces its URL once listening (port 0 picks one) and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import httpx

from tests.fixtures.processes import ProcessGroup, output_of


def test_announces_url_and_stops_cleanly_on_sigterm(processes: ProcessGroup, logreg_onnx: Path) -> None:
    args = [sys.executable, "-m", "conveyor.server", "--port", "0", "--model", f"lr={logreg_onnx}"]
    proc = processes.start(args)
    deadline = time.monotonic() + 30
    while not (found := re.search(r"listening on (http://\S+)", output_of(proc))):
        assert proc.poll() is None and time.monotonic() < deadline, output_of(proc)
        time.sleep(0.05)
    url = found.group(1)
    r = httpx.get(f"{url}/v2/models/lr")
    assert r.status_code == 200 and r.json()["versions"] == []
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, output_of(proc)
    assert "Traceback" not in output_of(proc)


def test_a_channel_replica_outlives_its_lease_only_while_it_is_refreshed(
    processes: ProcessGroup, logreg_onnx: Path, tmp_path: Path
) -> None:
    lease = tmp_path / "controlplane.lease"
    lease.touch()
    sock = tmp_path / "r.sock"
    args = [sys.executable, "-m", "conveyor.server", "--model", f"clf:1={logreg_onnx}"]
    proc = processes.start(
        [*args, "--channel", f"unix:{sock}", "--lease", str(lease), "--orphan-after", "1.5"]
    )
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        os.utime(lease)  # the control plane refreshes it while a replica starts, too
        time.sleep(0.05)
    assert sock.exists(), output_of(proc)
    for _ in range(8):  # refreshed like the control plane does: it keeps serving
        time.sleep(0.4)
        os.utime(lease)
        assert proc.poll() is None
    stale_at = time.monotonic()
    assert proc.wait(timeout=10) == 0, output_of(proc)  # not refreshed any more: it drains and exits
    assert time.monotonic() - stale_at >= 1.0
    assert "lease" in output_of(proc) and not sock.exists()
