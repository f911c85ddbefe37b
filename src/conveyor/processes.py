"""Processes on this machine, the one place that starts, supervises, stops and reads them.

Every process Conveyor starts (replicas, ``conveyor serve``'s children, ``conveyor up``'s control plane and
gateway, the server an offline tool measures) runs in a session of its own, so a terminal's Ctrl-C reaches
only its supervisor, which then stops it in order; it may ask Linux to SIGTERM it when its parent dies
(PR_SET_PDEATHSIG). A crashed child is restarted after an exponential backoff (``Supervised``). Stopping is
by the pid started only: SIGTERM (it drains), a deadline, SIGKILL, reaped. /proc is read here only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from conveyor.targets.backoff import Backoff

_PR_SET_PDEATHSIG = 1
Output = int | IO[bytes] | None
"""Where a child's output goes: a file, subprocess.DEVNULL, or None (this process's)."""


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies; nothing on other systems. Called in a child
    between fork and exec (``spawn(..., die_with_parent=True)``) or by the child itself."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: Output = None,
    stdout: Output = None,
    stderr: Output = None,
    with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in a session of its own; ``with_parent``: it gets SIGTERM when this process dies.
    ``env`` None: this process's environment."""
    return subprocess.Popen(
        list(args),
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=die_with_parent if with_parent and sys.platform.startswith("linux") else None,
    )


def stop(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """SIGTERM ``proc`` (it finishes in-flight work), wait up to ``timeout_s``, SIGKILL it if it is still
    there; reaped either way. False when it had to be killed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return False
    proc.wait()
    return True


async def stop_together(procs: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> list[int]:
    """``stop`` for several at once, without blocking the event loop: every one signalled first so they
    drain side by side; the pids that had to be killed."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    killed = []
    for p in procs:
        if p.poll() is None:
            killed.append(p.pid)
            p.kill()
        p.wait()
    return killed


# -- one child restarted with backoff ---------------------------------------------------------------------


@dataclass(eq=False)
class Supervised:
    """A child process that is started again after it exits, ``backoff`` later. Its supervisor calls
    ``check`` in its loop and decides, for each exit, ``restart_later`` or ``give_up``."""

    args: list[str]
    env: Mapping[str, str] | None = None
    stdout: Output = None
    with_parent: bool = False
    backoff: Backoff = field(default_factory=Backoff)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    """time.monotonic() of the last start."""
    streak: int = 0
    restart_at: float | None = None
    restarts: int = 0

    def start(self) -> None:
        self.proc = spawn(self.args, env=self.env, stdout=self.stdout, with_parent=self.with_parent)
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self, now: float) -> int | None:
        """Start it again if its restart is due; its exit code if it exited since the last check (then the
        caller calls ``restart_later`` or ``give_up``), else None."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restarts += 1
                self.start()
            return None
        if self.proc is not None and self.proc.poll() is not None:
            return self.proc.returncode
        return None

    def restart_later(self, now: float) -> float:
        """Schedule the restart of a child that exited: the delay, longer for each crash of a streak."""
        self.streak = self.backoff.next_streak(self.streak, now - self.started_at)
        delay = self.backoff.delay(self.streak)
        self.restart_at = now + delay
        return delay

    def give_up(self) -> None:
        """Not restarted: it stays stopped."""
        self.proc, self.restart_at = None, None


# -- /proc ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/PID/stat that Conveyor reads."""

    pid: int
    state: str
    """R, S, D, T, Z (a zombie: exited, not yet reaped by its parent), ..."""
    ppid: int
    pgid: int
    sid: int
    start: str
    """Start time in clock ticks since boot: with the pid, names one process (a pid may be reused)."""

    @property
    def zombie(self) -> bool:
        return self.state == "Z"


def proc_stat(pid: int) -> ProcStat | None:
    """/proc/PID/stat of a process; None if there is none (or it was being reaped as it was read)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if ")" not in stat:  # read while the process was being reaped
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    rest = stat[stat.rindex(")") + 2 :].split()
    try:
        return ProcStat(pid, rest[0], int(rest[1]), int(rest[2]), int(rest[3]), rest[19])
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> str | None:
    """The start time of a live process (not a zombie): compared with a recorded one, tells whether the
    pid is still the process recorded."""
    stat = proc_stat(pid)
    return None if stat is None or stat.zombie else stat.start


def all_processes() -> Iterator[ProcStat]:
    """Every process this one can see (zombies included)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := proc_stat(int(entry))) is not None:
            yield stat


def descendants(pid: int) -> list[int]:
    """The pids of ``pid``'s children, their children, and so on (zombies included)."""
    children: dict[int, list[int]] = {}
    for stat in all_processes():
        children.setdefault(stat.ppid, []).append(stat.pid)
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def resident_bytes(pid: int) -> int | None:
    """VmRSS of a live process (/proc/PID/status); None when gone or a zombie (no memory left)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
