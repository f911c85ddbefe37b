"""A replica's own V2 REST server (usable directly) under stalled and departing clients: the same body
deadline, body budget, keep-alive timeout and quiet logs as the gateway (e2e/test_up_stalled_clients.py).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fixtures.processes import ProcessGroup, free_port, output_of, wait_http_ok
from tests.fixtures.raw_http import answer_of, stalled_upload

IDLE_S = 1
MARGIN_S = 8  # a loaded 2-core machine
LIMITS = {
    "CONVEYOR_BODY_IDLE_TIMEOUT_S": str(IDLE_S),
    "CONVEYOR_KEEP_ALIVE_TIMEOUT_S": str(IDLE_S),
    "CONVEYOR_HEAD_TIMEOUT_S": str(IDLE_S),
    "CONVEYOR_BODY_BUDGET_BYTES": str(3_000_000),
}


def start_replica(
    processes: ProcessGroup, model: Path, env: dict[str, str]
) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    args = [sys.executable, "-m", "conveyor.server", "--port", str(port)]
    args += ["--model", f"clf:1={model}"]
    proc = processes.start(args, env=env)
    wait_http_ok(f"http://127.0.0.1:{port}/v2/health/ready", proc, timeout=30)
    return port, proc


def test_replica_answers_stalled_bodies_408_and_refuses_over_budget_503(
    processes: ProcessGroup, logreg_onnx: Path
) -> None:
    port, proc = start_replica(processes, logreg_onnx, LIMITS)
    held = [stalled_upload(port, declared=1_000_000, sent=1000) for _ in range(3)]  # the 3 MB budget
    refused = stalled_upload(port, declared=1_000_000, sent=0)
    try:
        status, raw = answer_of(refused, time.monotonic() + MARGIN_S)
        assert status == 503 and b"retry-after: 1" in raw.lower() and b"too many request bodies" in raw
        start = time.monotonic()
        for sock in held:
            status, raw = answer_of(sock, start + IDLE_S + MARGIN_S)
            assert status == 408 and b'{"error":"request body not received in time' in raw, raw
        # The budget is free again: a whole request goes through.
        body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        assert httpx.post(f"http://127.0.0.1:{port}/v2/models/clf/infer", json=body).status_code == 200
    finally:
        for sock in [*held, refused]:
            sock.close()
    assert "Traceback" not in output_of(proc)


def test_replica_closes_idle_connections_and_logs_no_error_for_clients_that_leave(
    processes: ProcessGroup, logreg_onnx: Path
) -> None:
    port, proc = start_replica(processes, logreg_onnx, LIMITS)
    idle = socket.create_connection(("127.0.0.1", port))
    try:
        assert answer_of(idle, time.monotonic() + IDLE_S + MARGIN_S) == (None, b"")
    finally:
        idle.close()
    for _ in range(25):
        stalled_upload(port, declared=10_000, sent=1000).close()
    time.sleep(1)
    log = output_of(proc)
    assert "Traceback" not in log and "ERROR" not in log, log


def test_replica_stopped_with_a_stalled_upload_answers_503_and_exits_in_time(
    processes: ProcessGroup, logreg_onnx: Path
) -> None:
    port, proc = start_replica(processes, logreg_onnx, {"CONVEYOR_BODY_IDLE_TIMEOUT_S": "120"})
    sock = stalled_upload(port, declared=1_000_000, sent=1000)
    try:
        time.sleep(0.3)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status, raw = answer_of(sock, start + 10)
        assert status == 503 and b"shutting down" in raw, raw
        assert proc.wait(timeout=10) == 0
    finally:
        sock.close()
    assert "Traceback" not in output_of(proc)


def chunked_upload(port: int, size: int) -> tuple[int | None, bytes]:
    """POST ``size`` bytes with Transfer-Encoding: chunked (no Content-Length: reserved as it arrives)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = b"POST /v2/models/clf/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b" " * 65536
    try:
        with contextlib.suppress(OSError):  # refused mid-way: the server closes while we send
            sock.sendall(head)
            for _ in range(size // len(chunk)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        return answer_of(sock, time.monotonic() + MARGIN_S)
    finally:
        sock.close()


def test_a_chunked_body_refused_over_budget_gives_its_reservation_back(
    processes: ProcessGroup, logreg_onnx: Path
) -> None:
    port, _ = start_replica(processes, logreg_onnx, LIMITS)
    status, raw = chunked_upload(port, 4_000_000)  # over the 3 MB budget as it arrives
    assert status in (503, None), raw
    for _ in range(3):  # each would be refused if the first had kept its 3 MB
        status, raw = chunked_upload(port, 2_000_000)
        assert status == 400 and b"JSON" in raw, raw  # admitted and read whole: then not JSON
