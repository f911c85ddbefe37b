"""Server processes: free ports, the process tree of a server, its memory, and stopping it by pid.

A server is started in a new session, so its tree is every process whose session id is the server's pid, plus
any descendant that started a session of its own (found by parent links). Only those pids are ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a live process, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[3])


def tree(root: int) -> set[int]:
    """The root pid, the processes of its session, and their descendants (live ones only)."""
    info = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            info[int(entry.name)] = st
    members = {pid for pid, (_, sid) in info.items() if sid == root or pid == root}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in info.items() if ppid in members} - members
        members |= children
        grew = bool(children)
    return members


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


class MemorySampler:
    """Samples the summed VmRSS of a process tree in a background thread; ``peak_mb`` since the last reset."""

    def __init__(self, root: int, interval_s: float = 0.25) -> None:
        self.root = root
        self.interval_s = interval_s
        self.peak_kb = 0
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        pids = tree(self.root)
        self.seen |= pids
        self.peak_kb = max(self.peak_kb, sum(rss_kb(p) for p in pids))

    def reset(self) -> None:
        self.peak_kb = 0
        self.sample()

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)


def start(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], known: set[int], grace_s: float = 20.0) -> list[int]:
    """SIGTERM the server, wait for it, then SIGKILL whatever of its tree is left; returns pids killed."""
    members = tree(proc.pid) | known | {proc.pid}
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    deadline = time.monotonic() + 5.0
    while (alive := {p for p in members if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in sorted(alive):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    return sorted(alive)


def _alive(pid: int) -> bool:
    """True for a live process, False for a gone or zombie one (pid reuse within seconds is ignored)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"
