"""Replica processes of the control plane on this machine: started detached, recorded, adoptable.

Unlike ``conveyor serve``'s supervised children (targets/local.py), these replicas outlive the control plane:
each runs in a session of its own and is recorded in ``run/replicas.json`` with its pid and the pid's start
time, so a restarted control plane can tell its replicas from unrelated processes that reused a pid. A replica
stops on its own when the control plane's lease file goes stale (server/channel.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor import errors
from conveyor.files import replacing
from conveyor.targets.base import ReplicaRecord

log = logging.getLogger("conveyor.targets.processes")
STATE_FILE = "replicas.json"
KEEP_LOGS = 100


def socket_dir(home: Path) -> Path:
    """A short per-home directory for the replicas' unix sockets (paths are limited to 107 bytes)."""
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"conveyor-{os.getuid()}-{digest}"


def pid_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if ")" not in stat:  # read while the process was being reaped
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] == "Z":  # a zombie has exited; only its parent's wait() is missing
        return None
    return rest[19]


class LocalProcesses:
    """Starts, finds, signals and records replica processes for one control plane (one CONVEYOR_HOME)."""

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

    # -- processes ------------------------------------------------------------------------------------

    def spawn(
        self,
        *,
        deployment: str,
        revision: int,
        template: str,
        model: str,
        version: str,
        model_file: Path,
        options: Mapping[str, Any],
    ) -> ReplicaRecord:
        """Start one replica serving ``model_file`` as ``deployment:version`` on a fresh unix socket."""
        self._make_dirs()
        rid = f"{deployment}-{template[:6]}-{secrets.token_hex(3)}"
        address = f"unix:{self.sockets / (secrets.token_hex(6) + '.sock')}"
        args = [
            sys.executable,
            "-m",
            "conveyor.server",
            "--model",
            f"{deployment}:{version}={model_file}",
            "--channel",
            address,
            "--lease",
            str(self.lease),
            "--orphan-after",
            str(self.orphan_after_s),
            "--replica-id",  # names its JSON-lines log file (conveyor logs)
            rid,
        ]
        for flag, value in options.items():
            if value is not None:
                args += [f"--{flag.replace('_', '-')}", str(value)]
        self._prune_logs()
        with open(self.log_dir / f"{rid}.log", "ab") as out:
            # A session of its own: the control plane's death (or Ctrl-C in its terminal) must not reach it.
            proc = subprocess.Popen(
                args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._children[proc.pid] = proc
        record = ReplicaRecord(
            id=rid,
            deployment=deployment,
            revision=revision,
            template=template,
            model=model,
            version=version,
            address=address,
            pid=proc.pid,
            pid_start=pid_start_time(proc.pid) or "",
            started_at=time.time(),
        )
        log.info("replica %s started (pid %d) on %s", rid, proc.pid, address)
        return record

    def alive(self, record: ReplicaRecord) -> bool:
        """True while the recorded process (not a later one with the same pid) runs."""
        child = self._children.get(record.pid)
        if child is not None:
            return child.poll() is None
        start = pid_start_time(record.pid)
        return start is not None and start == record.pid_start

    def exit_code(self, record: ReplicaRecord) -> int | None:
        """The exit status of a child that exited (None for an adopted process: not ours to wait for)."""
        child = self._children.get(record.pid)
        return None if child is None else child.poll()

    def signal(self, record: ReplicaRecord, sig: signal.Signals) -> None:
        if self.alive(record):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, sig)

    async def stop_all(self, records: list[ReplicaRecord], timeout_s: float) -> None:
        """SIGTERM each (it drains), wait up to ``timeout_s``, SIGKILL what is left; reap and clean up all."""
        for r in records:
            self.signal(r, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(self.alive(r) for r in records):
            await asyncio.sleep(0.05)
        for r in records:
            self.signal(r, signal.SIGKILL)
            self.forget(r)

    def touch_lease(self) -> None:
        """Tell the replicas their owner lives (they exit once it is ``orphan_after_s`` old)."""
        try:
            os.utime(self.lease)
        except FileNotFoundError:
            self.lease.parent.mkdir(parents=True, exist_ok=True)
            self.lease.touch()

    def release(self) -> None:
        """After ``stop_all``: no lease, an empty state file, and the socket directory gone if empty."""
        try:
            self.save([])
        except errors.DiskFull as exc:
            # Harmless: every recorded replica is stopped, and the next control plane skips dead pids.
            log.warning("%s; it still lists the replicas just stopped", exc.message)
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

    def _prune_logs(self) -> None:
        """Keep the newest ``KEEP_LOGS`` replica logs (those of crashed replicas are what one reads)."""
        try:
            logs = sorted(self.log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
        except OSError:
            return
        for old in logs[: max(0, len(logs) - KEEP_LOGS)]:
            with contextlib.suppress(OSError):
                old.unlink()

    def log_tail(self, record: ReplicaRecord, lines: int = 5) -> str:
        try:
            text = (self.log_dir / f"{record.id}.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    # -- the record on disk -----------------------------------------------------------------------------

    def load(self) -> list[ReplicaRecord]:
        path = self.run_dir / STATE_FILE
        try:
            data = json.loads(path.read_text())
            return [ReplicaRecord.from_dict(r) for r in data.get("replicas", [])]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable replica state %s: %s", path, exc)
            return []

    def save(self, records: list[ReplicaRecord]) -> None:
        """Atomically replace the state file (write a temp file, fsync, rename). On a full disk: DiskFull,
        with the previous state file intact and no temp file left."""
        data = json.dumps({"replicas": [r.to_dict() for r in records]}, indent=1)
        with replacing(self.run_dir / STATE_FILE) as f:
            f.write(data.encode())
