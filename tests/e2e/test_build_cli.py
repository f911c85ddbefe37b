"""`conveyor build` through the executable: with no Docker daemon, exit 0, one line saying so and a complete
context (the artifact's digest the registry's); with a daemon — a small Engine API server on a unix socket
that records POST /build and streams JSON lines back, as dockerd does — the build is sent and followed."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import socketserver
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conveyor.settings import Settings
from tests.e2e.conftest import CliRunner
from tests.fixtures.models import build_multi_input

WHEEL = f"conveyor-{conveyor.__version__}-py3-none-any.whl"


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A home with mul:1 (aliased production) and a stand-in for the conveyor wheel (building the real one
    takes seconds; docs/operations.md shows it built)."""
    folder = tmp_path_factory.mktemp("build")
    info = conveyor.register(
        "mul",
        build_multi_input(folder / "mul.onnx"),
        aliases=["production"],
        settings=Settings(home=folder / "home"),
    )
    (folder / WHEEL).write_bytes(b"PK wheel stand-in")
    return folder, info.sha256


@pytest.fixture
def build(registered: tuple[Path, str], cli: CliRunner, cli_env: dict[str, str]) -> CliRunner:
    folder, _ = registered
    cli_env["CONVEYOR_HOME"] = str(folder / "home")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return cli("build", "mul@production", "--wheel", str(folder / WHEEL), *args, check=check)

    return run


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="cvd-", dir="/tmp"))  # a unix socket path has 108 bytes at most
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _FakeEngine(http.server.BaseHTTPRequestHandler):
    """GET /_ping and POST /build as the Docker Engine API answers them; each request is recorded."""

    requests: list[dict[str, Any]]

    def address_string(self) -> str:  # a unix socket's peer has no host
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append({"method": "GET", "path": self.path})
        self._answer(b"OK", "text/plain", {"Api-Version": "1.47"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.requests.append(
            {"method": "POST", "path": self.path, "type": self.headers["Content-Type"], "body": body}
        )
        events = [
            {"stream": "Step 1/12 : FROM python:3.11-slim\n"},
            {"stream": " ---> 1a2b3c\n"},
            {"aux": {"ID": "sha256:" + "f" * 64}},
            {"stream": "Successfully tagged conveyor-mul:1\n"},
        ]
        self._answer(b"".join(json.dumps(e).encode() + b"\r\n" for e in events), "application/json", {})

    def _answer(self, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def engine(socket_dir: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []
    handler = type("Engine", (_FakeEngine,), {"requests": requests})
    server = _UnixHTTPServer(str(socket_dir / "docker.sock"), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"unix://{socket_dir / 'docker.sock'}", requests
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_with_no_daemon_it_says_so_in_one_line_exits_0_and_leaves_a_complete_context(
    build: CliRunner, cli_env: dict[str, str], registered: tuple[Path, str], socket_dir: Path, tmp_path: Path
) -> None:
    _, sha256 = registered
    cli_env["DOCKER_HOST"] = f"unix://{socket_dir / 'missing.sock'}"
    proc = build("-o", str(tmp_path / "ctx"))
    notice = [line for line in proc.stdout.splitlines() if "Docker daemon" in line]
    assert notice == [
        f"no Docker daemon at {socket_dir / 'missing.sock'}: [Errno 2] No such file or directory: not built; "
        f"the context is in {tmp_path / 'ctx'} (docker build -t conveyor-mul:1 {tmp_path / 'ctx'})"
    ]
    artifact = tmp_path / "ctx" / "models" / f"{sha256}.onnx"
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == sha256
    for name in ("Dockerfile", ".dockerignore", "constraints.txt", WHEEL, f"models/{sha256}.json"):
        assert (tmp_path / "ctx" / name).is_file(), name
    assert f"/models/{sha256}.onnx" in (tmp_path / "ctx" / "Dockerfile").read_text()

    refused = build("-o", str(tmp_path / "ctx2"), "--require-build", "--json", check=False)
    assert refused.returncode == 7
    assert refused.stderr.startswith("error: no Docker daemon at ") and refused.stdout == ""


def test_with_a_daemon_the_context_is_posted_as_a_tar_and_the_build_followed(
    build: CliRunner,
    cli_env: dict[str, str],
    registered: tuple[Path, str],
    engine: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    _, sha256 = registered
    cli_env["DOCKER_HOST"], requests = engine
    proc = build("-o", str(tmp_path / "ctx"), "--tag", "registry.local/mul:prod")
    assert "Step 1/12 : FROM python:3.11-slim" in proc.stdout
    assert proc.stdout.strip().endswith(f"Built registry.local/mul:prod (sha256:{'f' * 64})")
    assert [r["path"] for r in requests] == [
        "/_ping",
        "/build?t=registry.local%2Fmul%3Aprod&rm=1&forcerm=1",
    ]
    post = requests[1]
    assert post["type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(post["body"])) as tar:
        names = tar.getnames()
        dockerfile = tar.extractfile("Dockerfile")
        model = tar.extractfile(f"models/{sha256}.onnx")
        assert dockerfile is not None and model is not None
        assert "USER 10001:10001" in dockerfile.read().decode()
        assert hashlib.sha256(model.read()).hexdigest() == sha256
    assert WHEEL in names and "constraints.txt" in names
