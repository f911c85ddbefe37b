"""The agent's resumable download (edge/agent/download.py) against a real HTTP server on a loopback port: a
transfer cut half-way resumes with Range from where the partial file ends, a server that ignores Range gets
the whole file written from the start, and a file that is not the announced digest is refused and removed."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conveyor import errors
from conveyor.edge.agent.download import Downloaded, download

BLOB = bytes(range(256)) * 40  # 10 KiB
SHA = hashlib.sha256(BLOB).hexdigest()


class Server(ThreadingHTTPServer):
    cut_after: int | None = None  # the next answer stops after this many body bytes, once
    ranges = True
    body = BLOB
    seen: list[str | None]


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        header = self.headers.get("range")
        self.server.seen.append(header)
        body, start = self.server.body, 0
        if header and self.server.ranges:
            start = int(header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("content-range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("content-length", str(len(body) - start))
        self.end_headers()
        cut, self.server.cut_after = self.server.cut_after, None
        self.wfile.write(body[start:] if cut is None else body[start : start + cut])
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server(("127.0.0.1", 0), Handler)
    s.seen = []
    thread = threading.Thread(target=s.serve_forever, daemon=True)
    thread.start()
    try:
        yield s
    finally:
        s.shutdown()
        s.server_close()
        thread.join(timeout=5)


def fetch(server: Server, partial: Path, sha: str = SHA) -> Downloaded:
    async def go() -> Downloaded:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            return await download(client, "/blob", partial, sha, len(BLOB), "clf:2")

    return asyncio.run(go())


def test_a_download_cut_half_way_resumes_with_range_from_where_it_stopped(
    server: Server, tmp_path: Path
) -> None:
    partial = tmp_path / "blob.part"
    server.cut_after = 4000
    with pytest.raises(errors.Unavailable, match="stopped at 4000 of 10240 bytes"):
        fetch(server, partial)
    assert partial.read_bytes() == BLOB[:4000]
    got = fetch(server, partial)
    assert server.seen == [None, "bytes=4000-"]
    assert got.resumed_from == 4000 and partial.read_bytes() == BLOB


def test_a_server_that_ignores_range_gets_the_file_written_from_the_start(
    server: Server, tmp_path: Path
) -> None:
    partial = tmp_path / "blob.part"
    partial.write_bytes(BLOB[:3000])
    server.ranges = False
    got = fetch(server, partial)
    assert got.resumed_from == 0 and partial.read_bytes() == BLOB


def test_bytes_that_are_not_the_announced_digest_are_refused_and_removed(
    server: Server, tmp_path: Path
) -> None:
    partial = tmp_path / "blob.part"
    server.body = BLOB[:-1] + b"\x00"
    with pytest.raises(errors.IntegrityError, match=f"not the digest {SHA}"):
        fetch(server, partial)
    assert not partial.exists()
    server.body = BLOB + b"more"
    with pytest.raises(errors.IntegrityError, match="more than its 10240 bytes"):
        fetch(server, partial)
    assert not partial.exists()
