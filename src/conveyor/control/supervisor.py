"""``conveyor up``: the control plane and a gateway as two supervised child processes, stopped in order.

Each child runs in its own session (a Ctrl-C reaches only this process, which then stops the gateway first so
in-flight requests finish, then the control plane, which drains and stops the replicas) and gets SIGTERM
should this process die (PR_SET_PDEATHSIG). A child that exits unexpectedly is restarted with backoff: a
restarted control plane adopts the running replicas, the gateway keeps its last routing table meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from conveyor import processes
from conveyor.errors import Unavailable
from conveyor.ports import check_ports_free
from conveyor.processes import Supervised
from conveyor.targets.backoff import Backoff

if TYPE_CHECKING:
    import ssl

    from conveyor.security.tls import ServerTls

log = logging.getLogger("conveyor.control.supervisor")
START_TIMEOUT_S = 60.0


@dataclass(eq=False)
class Child(Supervised):
    """The control plane or the gateway: started in a session of its own, SIGTERM should this process
    die, restarted with backoff (conveyor/processes.py)."""

    name: str = ""
    health_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def spawn(self) -> None:
        self.start()


def wait_healthy(
    child: Child, timeout_s: float = START_TIMEOUT_S, verify: ssl.SSLContext | bool = True
) -> None:
    """Poll the child's health URL until it answers 200; Unavailable if it exits or the time runs out.
    ``verify`` checks an https child's certificate."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0, verify=verify) as client:
        while time.monotonic() < deadline:
            if not child.running:
                code = None if child.proc is None else child.proc.returncode
                raise Unavailable(
                    f"the {child.name} exited with code {code} while starting (see its log above)",
                    exit_code=code,
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(child.health_url).status_code == 200:
                    return
            time.sleep(0.1)
    raise Unavailable(f"the {child.name} did not become healthy within {timeout_s:.0f}s")


class Stack:
    """The control plane (``conveyor server --owned``) and the gateway (``conveyor gateway``).

    With ``tls`` both serve https only; the stack's own clients (its health checks, the gateway following
    the control plane, ``up -f``'s apply) verify them with ``ca_file``, else with the served certificate
    itself (trusted as is, so a certificate of a public CA works without naming its root)."""

    def __init__(
        self,
        *,
        host: str,
        api_port: int,
        port: int,
        grpc_port: int | None,
        backoff: Backoff | None = None,
        tls: ServerTls | None = None,
        ca_file: Path | None = None,
        token: Callable[[], str | None] | None = None,
    ) -> None:
        """``token`` gives the token the gateway follows the control plane with, once that has started
        (its admin token, written on its first start)."""
        self.host = host
        self._token = token
        self.ports = {"--api-port": api_port, "--port": port}
        if grpc_port is not None:
            self.ports["--grpc-port"] = grpc_port
        scheme = "http" if tls is None else "https"
        # The stack's own clients reach a wildcard address (every interface) through loopback.
        reach = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(host, host)
        reach = f"[{reach}]" if ":" in reach and not reach.startswith("[") else reach
        self.api_url = f"{scheme}://{reach}:{api_port}"
        self.gateway_url = f"{scheme}://{reach}:{port}"
        self.trust_file = None if tls is None else (ca_file or tls.cert_file)
        serve_tls = [] if tls is None else ["--tls-cert", str(tls.cert_file), "--tls-key", str(tls.key_file)]
        exe = [sys.executable, "-m", "conveyor.cli.main"]
        self.backoff = backoff or Backoff()
        self.control = Child(
            [*exe, "server", "--host", host, "--api-port", str(api_port), "--owned", *serve_tls],
            with_parent=True,
            backoff=self.backoff,
            name="control plane",
            health_url=f"{self.api_url}/api/v1/health",
        )
        gateway_args = [*exe, "gateway", "--control-plane", self.api_url, "--host", host, "--port", str(port)]
        if grpc_port is not None:
            gateway_args += ["--grpc-port", str(grpc_port)]
        if self.trust_file is not None:
            gateway_args += [*serve_tls, "--ca", str(self.trust_file)]
        self.gateway = Child(
            gateway_args,
            with_parent=True,
            backoff=self.backoff,
            name="gateway",
            health_url=f"{self.gateway_url}/v2/health/live",
        )
        self._stop = False

    def start(self) -> None:
        """Start the control plane, then the gateway; each must answer its health check."""
        check_ports_free(self.host, self.ports)
        verify: ssl.SSLContext | bool = True
        if self.trust_file is not None:
            from conveyor.security.tls import client_context

            verify = client_context(self.trust_file)
        for child in (self.control, self.gateway):
            if child is self.gateway and self._token is not None and (token := self._token()):
                child.env = {**os.environ, "CONVEYOR_TOKEN": token}
            child.spawn()
            wait_healthy(child, verify=verify)

    def run_until_signalled(self, on_restart: Callable[[Child, int | None], None] | None = None) -> None:
        """Supervise both children until SIGINT / SIGTERM."""

        def request_stop(signum: int, frame: Any) -> None:
            self._stop = True

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self._stop:
                now = time.monotonic()
                for child in (self.control, self.gateway):
                    code = child.check(now)
                    if code is not None:
                        child.restart_later(now)
                        if on_restart is not None:
                            on_restart(child, code)
                time.sleep(0.1)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Gateway first (in-flight requests finish), then the control plane (replicas drain and stop)."""
        for child in (self.gateway, self.control):
            if child.proc is not None and not processes.stop(child.proc, timeout_s):
                log.warning("the %s did not stop within %.0fs: killed it", child.name, timeout_s)
