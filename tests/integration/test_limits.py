"""Limits a replica's V2 REST server (and so a gateway's: the same front end) puts on clients, with real
sockets: connections per client address, and CORS off unless origins are configured."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fixtures.models import LOGREG_BODY
from tests.fixtures.processes import ProcessGroup, free_port, output_of, wait_http_ok
from tests.fixtures.raw_http import answer_of

ORIGIN = "https://app.example.com"
PREFLIGHT = {"origin": ORIGIN, "access-control-request-method": "POST"}


def start_replica(
    processes: ProcessGroup, model: Path, env: dict[str, str]
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    args = [sys.executable, "-m", "conveyor.server", "--port", str(port), "--model", f"clf:1={model}"]
    proc = processes.start(args, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/v2/health/ready", proc, timeout=30)
    return url, proc


def infer_over(sock: socket.socket) -> tuple[int | None, bytes]:
    head = f"POST /v2/models/clf/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(LOGREG_BODY)}\r\n\r\n"
    with contextlib.suppress(OSError):
        sock.sendall(head.encode() + LOGREG_BODY)
    return answer_of(sock, time.monotonic() + 10)


def test_a_client_over_max_connections_per_client_gets_429_and_one_log_line(
    processes: ProcessGroup, logreg_onnx: Path
) -> None:
    env = {"CONVEYOR_MAX_CONNECTIONS_PER_CLIENT": "4", "CONVEYOR_KEEP_ALIVE_TIMEOUT_S": "60"}
    env["CONVEYOR_LOG_REPEAT_INTERVAL_S"] = "2"  # the count of the other five comes 2 s after the first
    url, proc = start_replica(processes, logreg_onnx, env)
    port = int(url.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        time.sleep(0.2)  # the server has accepted all four
        answers = []
        for _ in range(6):
            with socket.create_connection(("127.0.0.1", port)) as extra:
                answers.append(infer_over(extra))
        for status, raw in answers:
            assert status == 429, raw
            assert b"retry-after: 1" in raw and b"max_connections_per_client" in raw
            assert b"connection: close" in raw
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)  # the server has seen them go: the client may connect again
    assert httpx.post(f"{url}/v2/models/clf/infer", content=LOGREG_BODY).status_code == 200
    deadline = time.monotonic() + 10
    while "more in the last" not in output_of(proc) and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = [line for line in output_of(proc).splitlines() if "refused a connection from 127.0.0.1" in line]
    assert len(lines) == 2 and lines[1].endswith("(5 more in the last 2s)"), lines  # not one per connection
    assert "Traceback" not in output_of(proc)


def test_cors_is_off_by_default(processes: ProcessGroup, logreg_onnx: Path) -> None:
    url, _ = start_replica(processes, logreg_onnx, {})
    preflight = httpx.options(f"{url}/v2/models/clf/infer", headers=PREFLIGHT)
    assert preflight.status_code == 405
    answer = httpx.post(f"{url}/v2/models/clf/infer", content=LOGREG_BODY, headers={"origin": ORIGIN})
    assert answer.status_code == 200
    for r in (preflight, answer):
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], r.headers


def test_cors_origins_let_those_origins_call_from_a_browser(
    processes: ProcessGroup, logreg_onnx: Path
) -> None:
    url, _ = start_replica(processes, logreg_onnx, {"CONVEYOR_CORS_ORIGINS": f'["{ORIGIN}"]'})
    preflight = httpx.options(f"{url}/v2/models/clf/infer", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    # The inference itself (the hot path hands a browser's request to the CORS layer), and an error.
    ok = httpx.post(f"{url}/v2/models/clf/infer", content=LOGREG_BODY, headers={"origin": ORIGIN})
    bad = httpx.post(f"{url}/v2/models/clf/infer", content=b"{", headers={"origin": ORIGIN})
    assert (ok.status_code, bad.status_code) == (200, 400)
    for r in (ok, bad):
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert "x-request-id" in r.headers["access-control-expose-headers"]
    other = httpx.options(
        f"{url}/v2/models/clf/infer", headers={**PREFLIGHT, "origin": "https://evil.example"}
    )
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
