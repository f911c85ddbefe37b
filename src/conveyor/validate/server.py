"""The real server a validation drives: ``conveyor serve REF`` started for the purpose on a free loopback
port (the port the kernel gives, read back from what the server prints), or an endpoint someone else runs
(``--url``). Each is stopped by exactly the pid that was started, even when the validation fails."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator

import httpx

from conveyor import processes
from conveyor.errors import Unauthenticated, Unavailable
from conveyor.serve_process import ServeProcess

START_DEADLINE_S = 120.0
_RSS = re.compile(r"^process_resident_memory_bytes\s+(\S+)$", re.MULTILINE)


class Endpoint:
    """A V2 endpoint serving one version: where to send its requests and how much memory it holds."""

    def __init__(
        self,
        base_url: str,
        name: str,
        version: int,
        pid: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.version = version
        self.pid = pid  # None: not ours (--url); memory is read from its /metrics instead
        self.headers = dict(headers or {})  # a bearer token for an endpoint that asks one

    @property
    def model_url(self) -> str:
        return f"{self.base_url}/v2/models/{self.name}/versions/{self.version}"

    @property
    def infer_url(self) -> str:
        return f"{self.model_url}/infer"

    def wait_ready(
        self, client: httpx.Client, deadline: float, alive: subprocess.Popen[bytes] | None
    ) -> None:
        """Until the version answers ready (200), the process exits, or ``deadline`` (monotonic) passes."""
        last = "no answer"
        while time.monotonic() < deadline:
            if alive is not None and alive.poll() is not None:
                raise Unavailable(f"the server exited with status {alive.returncode} before it was ready")
            try:
                r = client.get(f"{self.model_url}/ready", headers=self.headers, timeout=2.0)
                if r.status_code == 200:
                    return
                if r.status_code in (401, 403):
                    raise Unauthenticated(
                        f"{self.model_url} answers {r.status_code}: give a token it accepts (CONVEYOR_TOKEN)"
                    )
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        raise Unavailable(f"{self.model_url} was not ready in time ({last})")

    def rss_bytes(self, client: httpx.Client) -> int | None:
        """The server's resident memory: its process and their children from /proc when it is ours, else
        ``process_resident_memory_bytes`` from its /metrics; None when neither can be read."""
        if self.pid is not None:
            return tree_rss_bytes(self.pid)
        try:
            r = client.get(f"{self.base_url}/metrics", headers=self.headers, timeout=2.0)
        except httpx.HTTPError:
            return None
        found = _RSS.search(r.text) if r.status_code == 200 else None
        return int(float(found.group(1))) if found else None


class ServerProcess:
    """``conveyor serve NAME:VERSION`` for one version, started at once (conveyor/serve_process.py)."""

    def __init__(self, ref: str, name: str, version: int) -> None:
        self.ref, self.name, self.version = ref, name, version
        self.server = ServeProcess([ref])

    def endpoint(self, client: httpx.Client, deadline: float) -> Endpoint:
        """The endpoint once the version answers ready; Unavailable with the server's last line if it
        exits or ``deadline`` (monotonic) passes first."""
        try:
            url = self.server.wait_url(deadline)
            endpoint = Endpoint(url, self.name, self.version, pid=self.server.pid)
            endpoint.wait_ready(client, deadline, self.server.proc)
        except Unavailable as exc:
            raise Unavailable(f"serving {self.ref}: {exc.message}: {self.server.last_line()}") from None
        return endpoint

    def terminate(self) -> None:
        self.server.terminate()

    def close(self) -> None:
        self.server.stop()


@contextlib.contextmanager
def started(refs: list[tuple[str, str, int]], client: httpx.Client) -> Iterator[list[Endpoint]]:
    """A server per (ref, name, version), all starting at once, each ready; all stopped on exit, by the
    pids started, whatever happens inside."""
    servers: list[ServerProcess] = []
    try:
        for ref, name, version in refs:
            servers.append(ServerProcess(ref, name, version))
        deadline = time.monotonic() + START_DEADLINE_S
        yield [s.endpoint(client, deadline) for s in servers]
    finally:
        for s in servers:  # all signalled first: they stop side by side
            s.terminate()
        for s in servers:
            s.close()


def tree_rss_bytes(pid: int) -> int | None:
    """VmRSS of ``pid`` and its live descendants (a replica process each, with placement process)."""
    total, found = 0, False
    for p in [pid, *processes.descendants(pid)]:
        rss = processes.resident_bytes(p)
        if rss is not None:
            total, found = total + rss, True
    return total if found else None
