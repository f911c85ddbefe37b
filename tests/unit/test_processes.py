"""conveyor/processes.py with real child processes: sessions, dying with the parent, stopping by pid,
restarts with backoff, and /proc read back. Every test stops what it started, by pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from conveyor import processes
from conveyor.targets.backoff import Backoff

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
IGNORES_TERM = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
    "time.sleep(60)",
]


def until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Children a test starts; killed and reaped at teardown whatever happened."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def test_a_child_runs_in_a_session_of_its_own(started: list[subprocess.Popen[bytes]]) -> None:
    started.append(proc := processes.spawn(SLEEP))
    stat = processes.proc_stat(proc.pid)
    assert stat is not None and stat.sid == proc.pid and stat.pgid == proc.pid  # Ctrl-C does not reach it
    assert stat.ppid == os.getpid() and not stat.zombie


def test_proc_stat_reads_this_process_and_nothing_for_a_gone_one(
    started: list[subprocess.Popen[bytes]],
) -> None:
    me = processes.proc_stat(os.getpid())
    assert me is not None and (me.ppid, me.pgid, me.sid) == (os.getppid(), os.getpgid(0), os.getsid(0))
    assert me.start == processes.start_time(os.getpid()) and int(me.start) > 0
    started.append(proc := processes.spawn([sys.executable, "-c", "pass"]))
    assert until(lambda: (s := processes.proc_stat(proc.pid)) is not None and s.zombie)
    assert processes.start_time(proc.pid) is None  # exited: only its parent's wait() is missing
    proc.wait()
    assert processes.proc_stat(proc.pid) is None


def test_a_child_started_with_its_parent_gets_sigterm_when_the_parent_dies() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom conveyor import processes\n"
            f"p = processes.spawn({SLEEP!r}, with_parent=True)\nprint(p.pid, flush=True)\ntime.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert processes.start_time(child) is not None
        parent.kill()
        parent.wait(timeout=10)
        assert until(lambda: processes.start_time(child) is None), "the child outlived its parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
        parent.wait(timeout=10)


def test_stop_drains_with_sigterm_and_kills_what_ignores_it(started: list[subprocess.Popen[bytes]]) -> None:
    started.append(polite := processes.spawn(SLEEP))
    assert processes.stop(polite, timeout_s=10) is True and polite.returncode == -signal.SIGTERM
    started.append(stubborn := processes.spawn(IGNORES_TERM, stdout=subprocess.PIPE))
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    began = time.monotonic()
    assert processes.stop(stubborn, timeout_s=0.5) is False and stubborn.returncode == -signal.SIGKILL
    assert time.monotonic() - began < 10
    assert processes.proc_stat(stubborn.pid) is None  # reaped


def test_stop_together_signals_all_first_and_names_those_it_killed(
    started: list[subprocess.Popen[bytes]],
) -> None:
    started.append(stubborn := processes.spawn(IGNORES_TERM, stdout=subprocess.PIPE))
    started.extend(polite := [processes.spawn(SLEEP) for _ in range(2)])
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    killed = asyncio.run(processes.stop_together([stubborn, *polite], timeout_s=1.0))
    assert killed == [stubborn.pid]
    assert [p.returncode for p in polite] == [-signal.SIGTERM] * 2


def test_a_supervised_child_is_restarted_after_its_backoff_unless_given_up(
    started: list[subprocess.Popen[bytes]],
) -> None:
    crash = [sys.executable, "-c", "raise SystemExit(3)"]
    child = processes.Supervised(crash, backoff=Backoff(initial_s=0.2))
    exits: list[int] = []

    def exited() -> bool:
        code = child.check(time.monotonic())
        if code is not None:
            exits.append(code)
        return code is not None

    child.start()
    assert child.proc is not None
    started.append(child.proc)
    assert until(exited) and exits == [3] and not child.running
    assert child.restart_later(time.monotonic()) == pytest.approx(0.2)
    first = child.pid
    assert until(lambda: child.check(time.monotonic()) is None and child.restarts == 1)
    assert child.pid != first and child.proc is not None
    started.append(child.proc)
    assert until(exited) and exits == [3, 3]
    child.give_up()  # e.g. it refused a corrupt model: restarting would not help
    assert child.check(time.monotonic() + 3600) is None and child.proc is None and child.restarts == 1


def test_descendants_and_resident_memory_of_a_process_tree(started: list[subprocess.Popen[bytes]]) -> None:
    script = f"import subprocess\np = subprocess.Popen({SLEEP!r})\nprint(p.pid, flush=True)\np.wait()"
    started.append(parent := processes.spawn([sys.executable, "-c", script], stdout=subprocess.PIPE))
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    try:
        assert grandchild in processes.descendants(parent.pid)
        assert grandchild in processes.descendants(os.getpid())
        assert (processes.resident_bytes(grandchild) or 0) > 1_000_000  # a Python interpreter
    finally:
        os.kill(grandchild, signal.SIGKILL)
    parent.wait(timeout=10)
    assert processes.resident_bytes(parent.pid) is None
