"""The README's shell blocks run, in order, as a new user runs them on a fresh clone.

What runs, by the marker convention of the README (an HTML comment on the line just above a block's opening
fence: readers of the source see it, the rendered page does not):

- a ```` ```sh ```` block runs in ``bash -e -o pipefail`` and must exit 0 without printing a CLI ``error:``
  line (``a && b`` hides a failing ``a`` from ``-e``); whatever it leaves running is killed by pid after it;
- ``<!-- readme-test: skip (REASON) -->`` above a block: not run (it installs packages or runs ``make``);
- ``<!-- readme-test: server (runs until Ctrl-C) -->`` above a block: a server that holds its terminal. It is
  started in the background, must print "Ctrl-C to stop" (every Conveyor server does once ready), the blocks
  after it run meanwhile (as from another terminal), and it gets SIGINT (Ctrl-C) before the next server block
  and at the end;
- other fences (```` ```python ````, ```` ```yaml ````) are not shell and not run; a bare ```` ``` ```` fence
  is refused: say what the block is.

Where: a temp dir as the working directory (``examples/`` linked in from the repo, as in a clone), a throwaway
CONVEYOR_HOME, the repo's .venv/bin first on PATH. The README's ports 8000, 8080 and 8081 become free
loopback ports, and CONVEYOR_URL points at the one that replaced 8000 (the CLI's default).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from conveyor import processes
from tests.fixtures.processes import REPO, VENV_BIN, free_port
from tests.fixtures.stack import kill_recorded_replicas

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MARKER = re.compile(r"^<!-- readme-test: (skip|server) \((.+)\) -->$")
FENCE = re.compile(r"^```(\S*)\s*$")
README_PORTS = ("8000", "8080", "8081")
BLOCK_TIMEOUT_S = 300.0
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    marker: str | None  # "skip", "server" or None
    text: str


def readme_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and not FENCE.match(lines[i]):
            i += 1
        above = MARKER.match(lines[start - 1]) if start > 0 else None
        body = "\n".join(lines[start + 1 : i]) + "\n"
        blocks.append(Block(start + 1, opening.group(1), above.group(1) if above else None, body))
        i += 1  # past the closing fence
    return blocks


def process_group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``, from /proc."""
    return [p.pid for p in processes.all_processes() if p.pgid == pgid and not p.zombie]


def kill_pids(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM each pid, then SIGKILL what is still there after ``timeout``."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Session:
    """The user's shell: runs blocks, holds the servers, stops everything it started by pid."""

    def __init__(self, work: Path, home: Path, ports: dict[str, str]) -> None:
        self.work, self.home, self.ports = work, home, ports
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_") and k != "COLUMNS"}
        self.env |= {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "CONVEYOR_HOME": str(home),
            "CONVEYOR_URL": f"http://127.0.0.1:{ports['8000']}",
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log: IO[bytes] | None = None
        self.started: list[int] = []  # every process group this session started

    def localize(self, text: str) -> str:
        return re.sub(r"\b(" + "|".join(README_PORTS) + r")\b", lambda m: self.ports[m.group(1)], text)

    def start(self, text: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
        args = ["bash", "-e", "-o", "pipefail", "-c", self.localize(text)]
        proc = subprocess.Popen(
            args, cwd=self.work, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append(proc.pid)
        return proc

    def run(self, block: Block) -> None:
        with tempfile.TemporaryFile() as log:
            proc = self.start(block.text, log)
            try:
                code = proc.wait(timeout=BLOCK_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                kill_pids([proc.pid, *process_group(proc.pid)])
                proc.wait(timeout=10)
            log.seek(0)
            out = log.read().decode(errors="replace")
        where = f"README.md line {block.line}:\n{block.text}\n--- output ---\n{out}"
        assert code is not None, f"did not finish within {BLOCK_TIMEOUT_S:.0f}s: {where}"
        assert code == 0, f"exited {code}: {where}"
        assert not re.search(r"^error:", out, re.MULTILINE), f"printed an error: {where}"

    def start_server(self, block: Block) -> None:
        self.stop_server()
        self.server_log = tempfile.NamedTemporaryFile()  # noqa: SIM115 (closed in stop_server)
        self.server = self.start("exec " + block.text.strip(), self.server_log)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "Ctrl-C to stop" not in self.server_output():
            if self.server.poll() is not None or time.monotonic() > deadline:
                out = self.server_output()
                raise AssertionError(
                    f"README.md line {block.line}: the server exited ({self.server.returncode}) or was not "
                    f"ready within {READY_TIMEOUT_S:.0f}s:\n{block.text}\n--- output ---\n{out}"
                )
            time.sleep(0.2)

    def server_output(self) -> str:
        return "" if self.server_log is None else Path(self.server_log.name).read_text(errors="replace")

    def stop_server(self) -> None:
        """Ctrl-C: SIGINT to the server, which drains and stops what it started; then anything left."""
        if self.server is None:
            return
        server, self.server = self.server, None
        try:
            if server.poll() is None:
                server.send_signal(signal.SIGINT)
                server.wait(timeout=STOP_TIMEOUT_S)
            assert server.returncode == 0, f"the server exited {server.returncode}:\n{self.server_output()}"
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(timeout=10)
            kill_pids(process_group(server.pid))
            if self.server_log is not None:
                self.server_log.close()
                self.server_log = None

    def close(self) -> None:
        try:
            self.stop_server()
        finally:
            kill_recorded_replicas(self.home)  # replicas run in their own sessions
            for pgid in self.started:
                kill_pids(process_group(pgid))


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    work = tmp_path / "clone"
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples")
    ports = {p: str(free_port()) for p in README_PORTS}
    s = Session(work, tmp_path / "home", ports)
    try:
        yield s
    finally:
        s.close()
    leftovers = [pid for pgid in s.started for pid in process_group(pgid)]
    assert not leftovers, f"processes still running after the README: {leftovers}"


def test_readme_marks_every_block() -> None:
    for block in readme_blocks((REPO / "README.md").read_text()):
        where = f"README.md line {block.line}"
        assert block.language, f"{where}: a bare ``` fence; say what it is (```sh, ...)"
        if block.marker is not None:
            assert block.language == "sh", f"{where}: a readme-test marker on a {block.language} block"


def test_readme_shell_blocks_run_in_order_on_a_fresh_clone(session: Session) -> None:
    blocks = [b for b in readme_blocks((REPO / "README.md").read_text()) if b.language == "sh"]
    run = [b for b in blocks if b.marker != "skip"]
    assert len(run) >= 5, "the tour's blocks are not found"
    for block in run:
        if block.marker == "server":
            session.start_server(block)
        else:
            session.run(block)
