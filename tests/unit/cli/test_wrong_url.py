"""--url pointing at something that is not a Conveyor control plane, or at no valid URL at all."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _NotConveyor(BaseHTTPRequestHandler):
    """Answers every request 200 with unrelated JSON, like some other service on the port."""

    def _answer(self) -> None:
        body = b'{"unrelated": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotConveyor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def conveyor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor.cli.main", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args",
    [["delete", "deployment", "x"], ["get", "deployments"], ["scale", "x", "-r", "2"], ["history", "x"]],
)
def test_another_server_is_not_taken_for_a_control_plane(other_server: str, args: list[str]) -> None:
    done = conveyor(*args, "--url", other_server)
    assert done.returncode == 7  # unavailable, not a false success
    assert done.stderr.strip() == (
        f"error: {other_server} is not a Conveyor control plane (HTTP 200, application/json); "
        "check --url or CONVEYOR_URL"
    )


def test_predict_against_a_server_without_v2_metadata(other_server: str) -> None:
    done = conveyor("predict", "iris", "-d", '{"x": [1]}', "--url", other_server)
    assert done.returncode == 7
    assert "is not a V2 inference server" in done.stderr and "unexpected" not in done.stderr


@pytest.mark.parametrize("url", ["http://[::1", "notaurl", "ftp://host:1"])
def test_a_malformed_url_is_a_usage_error(url: str) -> None:
    for args in (["get", "deployments", "--url", url], ["predict", "iris", "-d", "{}", "--url", url]):
        done = conveyor(*args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: invalid URL {url!r}")
