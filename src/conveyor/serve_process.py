"""``conveyor serve`` as a child process of an offline tool (validate, tune): started on 127.0.0.1 and a
port the kernel picks, its URL read back from the line it prints, stopped by exactly the pid started.

Its output goes to a file of its own opened for appending (never a pipe nobody reads, and reading it here
through another descriptor never moves where the server writes); a session of its own, so a terminal's
Ctrl-C reaches the tool, which stops it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from conveyor import processes
from conveyor.errors import Unavailable

HOST = "127.0.0.1"
STOP_DEADLINE_S = 15.0
_LISTENING = re.compile(r"listening on (https?://\S+)")


class ServeProcess:
    """``conveyor serve ARGS... --host 127.0.0.1 --port 0`` with ``env`` over this process's environment."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="conveyor-serve-")
        self.log = Path(self._dir.name) / "serve.log"
        command = [sys.executable, "-m", "conveyor.cli.main", "serve", *args, "--host", HOST, "--port", "0"]
        # unbuffered: its "listening on" line as soon as it is printed; wide: that line not wrapped
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})}
        with self.log.open("ab") as out:
            self.proc = processes.spawn(
                command, env=full_env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exit_code(self) -> int | None:
        """None while it runs."""
        return self.proc.poll()

    def url(self) -> str | None:
        """The base URL it announced it listens on, None before it has."""
        found = _LISTENING.search(self.output())
        return found.group(1).rstrip("/") if found else None

    def wait_url(self, deadline: float) -> str:
        """The announced URL; Unavailable saying why if it exits or ``deadline`` (monotonic) passes first."""
        while time.monotonic() < deadline:
            url = self.url()
            if url is not None:
                return url
            if self.proc.poll() is not None:
                raise Unavailable(f"the server exited with status {self.proc.returncode}")
            time.sleep(0.05)
        raise Unavailable("the server said nothing of listening in time")

    def output(self) -> str:
        try:
            return self.log.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def last_line(self) -> str:
        """Its last error line (else its last line) of output, for a message saying why it failed."""
        lines = [line.strip() for line in self.output().splitlines() if line.strip()]
        errors = [line for line in lines if line.lower().startswith("error")]
        return (errors or lines or ["no output"])[-1][:300]

    def terminate(self) -> None:
        """SIGTERM to the pid started: the server finishes in-flight requests and exits."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = STOP_DEADLINE_S) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s`` (its replicas exit with it: PR_SET_PDEATHSIG,
        targets/local.py); by pid only. Its output is gone afterwards."""
        processes.stop(self.proc, timeout_s)
        self._dir.cleanup()
