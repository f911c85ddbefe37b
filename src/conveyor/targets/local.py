"""The local target: N replica processes on this machine, supervised.

A crashed replica is restarted in the same slot (same channel address) after an exponential backoff; stop()
sends SIGTERM to each, waits for them to drain, kills what is left and reaps every child.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.digests import EXIT_DATA_LOSS
from conveyor.targets.backoff import Backoff

log = logging.getLogger("conveyor.targets.local")


@dataclass(eq=False, slots=True)
class ReplicaSlot:
    """One supervised replica position; its process changes across restarts, its address does not."""

    index: int
    address: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    streak: int = 0
    restarts: int = 0
    restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalTarget:
    """Runs ``command`` (a replica launcher line) ``count`` times, each with its own ``--channel`` socket."""

    def __init__(
        self,
        command: Sequence[str],
        count: int,
        run_dir: Path,
        *,
        backoff: Backoff | None = None,
        on_exit: Callable[[ReplicaSlot], None] | None = None,
        poll_interval_s: float = 0.05,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env`` is added to this process's environment for every replica."""
        self.command = list(command)
        self.env = {**os.environ, **(env or {})}
        self.backoff = backoff or Backoff()
        self.slots = [ReplicaSlot(i, f"unix:{run_dir / f'replica-{i}.sock'}") for i in range(count)]
        self._on_exit = on_exit
        self._poll_s = poll_interval_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.slots]

    def _spawn(self, slot: ReplicaSlot) -> None:
        args = [*self.command, "--channel", slot.address, "--parent-pid", str(os.getpid())]
        # A session of its own: Ctrl-C in a terminal reaches the gateway only, which drains first and then
        # stops the replicas; the replica's PR_SET_PDEATHSIG covers a gateway that dies hard.
        slot.proc = subprocess.Popen(args, env=self.env, stdout=subprocess.DEVNULL, start_new_session=True)
        slot.started_at = time.monotonic()
        slot.restart_at = None
        log.info("replica %d started (pid %d) on %s", slot.index, slot.proc.pid, slot.address)

    async def start(self) -> None:
        for slot in self.slots:
            self._spawn(slot)
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            for slot in self.slots:
                if slot.restart_at is not None:
                    if now >= slot.restart_at:
                        slot.restarts += 1
                        self._spawn(slot)
                elif slot.proc is not None and slot.proc.poll() is not None:
                    self._crashed(slot, now)
            await asyncio.sleep(self._poll_s)

    def _crashed(self, slot: ReplicaSlot, now: float) -> None:
        assert slot.proc is not None
        code = slot.proc.returncode
        if code == EXIT_DATA_LOSS:
            # It refused a model whose bytes are not the version's (its error line is above): every restart
            # would read the same bytes, so the slot stays empty and the others keep serving.
            log.error(
                "replica %d (pid %d) refused a corrupt model: not restarting it", slot.index, slot.proc.pid
            )
            slot.proc = None
            if self._on_exit is not None:
                self._on_exit(slot)
            return
        slot.streak = self.backoff.next_streak(slot.streak, now - slot.started_at)
        delay = self.backoff.delay(slot.streak)
        slot.restart_at = now + delay
        log.warning(
            "replica %d (pid %d) exited with %s; restarting in %.1fs", slot.index, slot.proc.pid, code, delay
        )
        if self._on_exit is not None:
            self._on_exit(slot)

    async def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every replica, wait up to ``timeout_s`` for them to drain, SIGKILL the rest; reap all."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        procs = [s.proc for s in self.slots if s.proc is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for p in procs:
            if p.poll() is None:
                log.warning("replica pid %d did not stop within %.0fs: killing it", p.pid, timeout_s)
                p.kill()
            p.wait()
