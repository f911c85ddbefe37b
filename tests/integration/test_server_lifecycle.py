"""The replica process: announces its URL once listening (port 0 picks one) and exits cleanly on SIGTERM."""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path

import httpx

from tests.fixtures.processes import ProcessGroup, output_of


def test_announces_url_and_stops_cleanly_on_sigterm(processes: ProcessGroup, logreg_onnx: Path) -> None:
    args = [sys.executable, "-m", "conveyor.server.launch", "--port", "0", "--model", f"lr={logreg_onnx}"]
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
