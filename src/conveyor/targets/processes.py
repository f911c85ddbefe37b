"""The ``local`` target: a control plane's replica processes on this machine, started detached and adoptable.

Unlike ``conveyor serve``'s supervised children (targets/local.py), these replicas outlive the control plane:
each runs in a session of its own and is recorded (targets/state.py) with its pid and the pid's start time,
so a restarted control plane can tell its replicas from unrelated processes that reused a pid. A replica
stops on its own when the control plane's lease file goes stale (server/channel.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from conveyor import processes
from conveyor.targets.base import LOCAL, Launch, ReplicaRecord, new_record, replica_id

log = logging.getLogger("conveyor.targets.processes")
KEEP_LOGS = 100


def socket_dir(home: Path) -> Path:
    """A short per-home directory for the replicas' unix sockets (paths are limited to 107 bytes)."""
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"conveyor-{os.getuid()}-{digest}"


class LocalProcesses:
    """The local ``Target`` of one control plane (one CONVEYOR_HOME): replica processes it starts, finds
    again, stops by pid and keeps alive through a lease file."""

    kind = LOCAL

    def __init__(
        self,
        run_dir: Path,
        sockets: Path,
        *,
        lease: Path,
        orphan_after_s: float,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.sockets = sockets
        self.lease = lease
        self.orphan_after_s = orphan_after_s
        self.env = {**os.environ, **(env or {})}
        self.log_dir = log_dir or run_dir / "logs"
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def _make_dirs(self) -> None:
        # Made when first needed: reading the state file (a test cleaning up) must not create anything.
        for d in (self.run_dir, self.sockets, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            self.sockets.chmod(0o700)

    # -- Target -----------------------------------------------------------------------------------------

    def create(self, launch: Launch) -> ReplicaRecord:
        """Start one replica serving ``launch.model_file`` as ``deployment:version`` on a new unix socket."""
        self._make_dirs()
        rid = replica_id(launch)
        address = f"unix:{self.sockets / (secrets.token_hex(6) + '.sock')}"
        args = [
            sys.executable,
            "-m",
            "conveyor.server",
            "--model",
            f"{launch.deployment}:{launch.version}={launch.model_file}",
            "--channel",
            address,
            "--lease",
            str(self.lease),
            "--orphan-after",
            str(self.orphan_after_s),
            "--replica-id",  # names its JSON-lines log file (conveyor logs)
            rid,
        ]
        for flag, value in launch.options.items():
            if value is not None:
                args += [f"--{flag.replace('_', '-')}", str(value)]
        self._prune_logs()
        env = {**self.env, **launch.env} if launch.env else self.env
        with open(self.log_dir / f"{rid}.log", "ab") as out:
            # A session of its own and no PR_SET_PDEATHSIG: the control plane's death (or Ctrl-C in its
            # terminal) must not reach it; a restarted control plane adopts it.
            proc = processes.spawn(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        self._children[proc.pid] = proc
        start = processes.start_time(proc.pid) or ""
        record = new_record(launch, rid, target=self.kind, address=address, pid=proc.pid, pid_start=start)
        log.info("replica %s started (pid %d) on %s", rid, proc.pid, address)
        return record

    def endpoint(self, record: ReplicaRecord) -> str | None:
        return record.address  # chosen before it started: its socket path

    def alive(self, record: ReplicaRecord) -> bool:
        """True while the recorded process (not a later one with the same pid) runs."""
        child = self._children.get(record.pid)
        if child is not None:
            return child.poll() is None
        start = processes.start_time(record.pid)
        return start is not None and start == record.pid_start

    def exit_code(self, record: ReplicaRecord) -> int | None:
        """The exit status of a child that exited (None for an adopted process: not ours to wait for)."""
        child = self._children.get(record.pid)
        return None if child is None else child.poll()

    def stop(self, record: ReplicaRecord, *, drain: bool) -> None:
        """SIGTERM (it finishes in-flight requests, then exits) or SIGKILL, to the recorded process only."""
        if self.alive(record):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGTERM if drain else signal.SIGKILL)

    def adopt(self, record: ReplicaRecord) -> bool:
        return self.alive(record)

    async def stop_all(self, records: Sequence[ReplicaRecord], timeout_s: float) -> None:
        """SIGTERM each (it drains), wait up to ``timeout_s``, SIGKILL what is left; reap and clean up all."""
        for r in records:
            self.stop(r, drain=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(self.alive(r) for r in records):
            await asyncio.sleep(0.05)
        for r in records:
            self.stop(r, drain=False)
            self.forget(r)

    def keepalive(self) -> None:
        """Tell the replicas their owner lives (they exit once it is ``orphan_after_s`` old)."""
        try:
            os.utime(self.lease)
        except FileNotFoundError:
            self.lease.parent.mkdir(parents=True, exist_ok=True)
            self.lease.touch()

    def release(self) -> None:
        """After ``stop_all``: no lease, and the socket directory gone if empty."""
        with contextlib.suppress(OSError):
            self.lease.unlink()
        with contextlib.suppress(OSError):
            self.sockets.rmdir()

    def forget(self, record: ReplicaRecord) -> None:
        """Reap the child (no zombie left behind) and remove its socket file."""
        child = self._children.pop(record.pid, None)
        if child is not None and child.poll() is None:
            return  # still running: keep it (a bug upstream); it will be reaped at the next stop
        path = record.address.removeprefix("unix:")
        with contextlib.suppress(OSError):
            os.unlink(path)

    def log_tail(self, record: ReplicaRecord, lines: int = 5) -> str:
        try:
            text = (self.log_dir / f"{record.id}.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def _prune_logs(self) -> None:
        """Keep the newest ``KEEP_LOGS`` replica logs (those of crashed replicas are what one reads)."""
        try:
            logs = sorted(self.log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
        except OSError:
            return
        for old in logs[: max(0, len(logs) - KEEP_LOGS)]:
            with contextlib.suppress(OSError):
                old.unlink()
