"""The Docker Engine API over HTTP with httpx (a dependency already): ``GET /_ping`` to find a daemon, and
``POST /build`` with the context as a tar, its JSON-lines progress streamed back. No Docker SDK: two calls
do not justify a new dependency and its transitive pins."""

from __future__ import annotations

import json
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

from conveyor import errors

DEFAULT_SOCKET = "/var/run/docker.sock"


class EngineUnreachable(errors.Unavailable):
    """No Docker daemon answers at the address (DOCKER_HOST, else the default socket)."""


class DockerEngine:
    """A Docker daemon at ``host``: ``unix:///PATH``, ``tcp://HOST:PORT`` (plain HTTP) or None for the
    default socket. Connecting waits ``connect_timeout_s``; a build may be silent ``read_timeout_s``
    between two lines."""

    def __init__(
        self, host: str | None = None, *, connect_timeout_s: float = 5.0, read_timeout_s: float = 600.0
    ) -> None:
        host = host or f"unix://{DEFAULT_SOCKET}"
        parts = urlsplit(host)
        if parts.scheme == "unix":
            self.address = parts.path
            transport = httpx.HTTPTransport(uds=parts.path, verify=False)  # no TLS: skip loading CAs
            base_url = "http://docker"
        elif parts.scheme in ("tcp", "http"):
            self.address = host
            transport = httpx.HTTPTransport(verify=False)  # plain HTTP (DOCKER_TLS_VERIFY: not supported)
            base_url = f"http://{parts.netloc}"
        else:
            raise errors.InvalidInput(
                f"DOCKER_HOST {host!r}: only unix:///PATH and tcp://HOST:PORT are supported (TLS is not)"
            )
        self._client = httpx.Client(
            transport=transport,
            base_url=base_url,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> str:
        """The daemon's API version; EngineUnreachable when none answers."""
        try:
            response = self._client.get("/_ping")
        except httpx.TransportError as e:
            raise EngineUnreachable(f"no Docker daemon at {self.address}: {e or type(e).__name__}") from None
        if response.status_code != 200:
            raise EngineUnreachable(
                f"no Docker daemon at {self.address}: /_ping answered {response.status_code}"
            )
        return str(response.headers.get("api-version", ""))

    def build(self, context: Path, tag: str, on_line: Callable[[str], None]) -> str:
        """Build the image of the folder ``context`` tagged ``tag``, passing each progress line to
        ``on_line``; the image's id. ConversionError with the daemon's message when the build fails."""
        with tempfile.TemporaryFile() as tar:
            _write_tar(context, tar)
            size = tar.tell()
            tar.seek(0)
            try:
                with self._client.stream(
                    "POST",
                    "/build",
                    params={"t": tag, "rm": "1", "forcerm": "1"},
                    headers={"Content-Type": "application/x-tar", "Content-Length": str(size)},
                    content=_chunks(tar),
                ) as response:
                    if response.status_code != 200:
                        response.read()
                        raise errors.ConversionError(f"docker build {tag}: {_message(response)}")
                    return _follow(response.iter_lines(), tag, on_line)
            except httpx.TransportError as e:
                raise errors.Unavailable(
                    f"docker build {tag}: the daemon at {self.address} failed: {e or type(e).__name__}"
                ) from None


def _follow(lines: Iterator[str], tag: str, on_line: Callable[[str], None]) -> str:
    image_id = ""
    for line in lines:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            on_line(line)
            continue
        if "error" in event:
            raise errors.ConversionError(f"docker build {tag}: {str(event['error']).strip()}")
        if isinstance(event.get("aux"), dict) and "ID" in event["aux"]:
            image_id = str(event["aux"]["ID"])
        for text in (event.get("stream"), event.get("status")):
            if isinstance(text, str) and text.strip():
                on_line(text.rstrip("\n"))
    if not image_id:
        raise errors.ConversionError(f"docker build {tag}: the daemon's answer ended without an image id")
    return image_id


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"


def _write_tar(context: Path, out: IO[bytes]) -> None:
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path in sorted(context.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(context)), recursive=False)


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(1 << 20):
        yield chunk
