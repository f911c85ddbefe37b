"""One trial of ``conveyor tune``: the real serving stack (``conveyor serve``) started with one setting on a
free loopback port, waited for until ready, loaded, and stopped by its pid, whatever happened."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from conveyor.tune.load import Load, run_load
from conveyor.tune.search import Row, Trial

HOST = "127.0.0.1"
_LISTENING = re.compile(r"listening on https?://[^\s]+:(\d+)")


def run_trial(ref: str, trial: Trial, load: Load, placement: str = "auto") -> Row:
    """Serve ``ref`` as ``trial.setting`` says, load it, and stop it: the row of what was measured, or of
    why nothing could be (``failure``: the server did not start or died, with its last output line)."""
    started = time.perf_counter()
    s = trial.setting
    name, _, version = ref.partition(":")
    path = f"/v2/models/{name}/versions/{version}/infer"
    command = [
        sys.executable,
        "-m",
        "conveyor.cli.main",
        "serve",
        ref,
        "--host",
        HOST,
        "--port",
        "0",  # any free port: the server announces the one it bound, so no other process can take it first
        "--replicas",
        str(s.replicas),
        "--placement",
        placement,
        "--max-batch-size",
        str(s.max_batch_size),
        "--max-queue-delay-us",
        str(s.max_queue_delay_us),
    ]
    # Replicas read their threads from the environment (targets/serve_stack.py passes the gateway's
    # settings on); no log file per trial in the user's log directory.
    env = {
        **os.environ,
        "CONVEYOR_INTRA_OP_THREADS": str(s.threads),
        "CONVEYOR_LOG_TO_FILE": "false",
        "COLUMNS": "200",  # the announcement on one line
    }
    with tempfile.TemporaryDirectory(prefix="conveyor-tune-") as tmp:
        log = Path(tmp) / "serve.log"
        # Its output to a file of its own (read here through another descriptor, so reading never moves
        # where it writes); a session of its own: a terminal's Ctrl-C reaches tune, which stops it (finally).
        with log.open("ab") as out:
            proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            port = _wait_ready(proc, load.start_timeout_s, log)
            if isinstance(port, str):
                return Row(trial.phase, s, failure=port, wall_s=time.perf_counter() - started)
            result = run_load(HOST, port, path, load)
            died = proc.poll()
        finally:
            stop(proc, load.stop_timeout_s)
        failure = f"the server exited ({died}) under load: {_last_line(log)}" if died is not None else None
        return Row(
            trial.phase,
            s,
            rps=result.rps,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            requests=result.requests,
            errors=result.errors,
            failure=failure or (result.error_sample and f"errors: {result.error_sample}") or None,
            wall_s=time.perf_counter() - started,
            client_cpu_us=result.client_cpu_us,
        )


def _wait_ready(proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> int | str:
    """The port once the server announced it and says every model can answer; else why not (it exited,
    or was not ready in time)."""
    deadline = time.monotonic() + timeout_s
    port: int | None = None
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                return f"the server exited ({code}) before it was ready: {_last_line(log)}"
            if port is None:
                found = _LISTENING.search(log.read_bytes().decode(errors="replace"))
                port = int(found.group(1)) if found else None
            if port is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"http://{HOST}:{port}/v2/health/ready").status_code == 200:
                        return port
            time.sleep(0.1)
    return f"not ready within {timeout_s:g} s"


def stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM (the server drains and stops its replicas), then SIGKILL after ``timeout_s``; by pid only."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()  # its replicas exit with it: PR_SET_PDEATHSIG (targets/local.py)
            proc.wait(timeout=5)


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_bytes().decode(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    return (errors or lines or ["no output"])[-1][:300]
