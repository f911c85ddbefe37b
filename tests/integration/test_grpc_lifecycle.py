"""The replica's gRPC port: announced once listening (0 picks one), stopped on SIGTERM, never shared."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import tritonclient.grpc as tg

from tests.fixtures.processes import ProcessGroup, output_of


def _launch(processes: ProcessGroup, model: Path, grpc_port: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "conveyor.server", "--port", "0", "--grpc-port", str(grpc_port)]
    return processes.start([*args, "--model", f"lr={model}"])


def test_grpc_port_zero_is_announced_and_stops_cleanly_on_sigterm(
    processes: ProcessGroup, logreg_onnx: Path
) -> None:
    proc = _launch(processes, logreg_onnx, 0)
    deadline = time.monotonic() + 30
    while not (found := re.search(r"gRPC listening on (\S+)", output_of(proc))):
        assert proc.poll() is None and time.monotonic() < deadline, output_of(proc)
        time.sleep(0.05)
    with tg.InferenceServerClient(found.group(1)) as client:
        assert client.is_model_ready("lr")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, output_of(proc)
    assert "Traceback" not in output_of(proc)


def test_a_grpc_port_in_use_fails_startup_with_exit_1(processes: ProcessGroup, logreg_onnx: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = _launch(processes, logreg_onnx, taken.getsockname()[1])
        assert proc.wait(timeout=30) == 1
    assert "cannot listen for gRPC on 127.0.0.1:" in output_of(proc)
