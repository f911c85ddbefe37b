"""``conveyor serve``'s replicas: N replica processes on this machine, children of its gateway, supervised.

A crashed replica is restarted in the same slot (same channel address) after an exponential backoff; stop()
sends SIGTERM to each, waits for them to drain, kills what is left and reaps every child
(conveyor/processes.py does each of those).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.digests import EXIT_DATA_LOSS
from conveyor.processes import Supervised, stop_together
from conveyor.targets.backoff import Backoff

log = logging.getLogger("conveyor.targets.local")


@dataclass(eq=False)
class ReplicaSlot(Supervised):
    """One supervised replica position; its process changes across restarts, its address does not."""

    index: int = 0
    address: str = ""


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
        slot_env: Callable[[int], Mapping[str, str]] | None = None,
    ) -> None:
        """``env`` is added to this process's environment for every replica, ``slot_env(i)`` for the i-th
        (a GPU each: its CUDA_VISIBLE_DEVICES)."""
        full_env = {**os.environ, **(env or {})}
        self.slots = []
        for i in range(count):
            address = f"unix:{run_dir / f'replica-{i}.sock'}"
            # --parent-pid: the replica asks for PR_SET_PDEATHSIG itself, and exits should this gateway be
            # gone by then (server/channel.py); its own session: Ctrl-C in a terminal reaches the gateway
            # only, which drains first and then stops the replicas.
            args = [*command, "--channel", address, "--parent-pid", str(os.getpid())]
            own_env = full_env if slot_env is None else {**full_env, **slot_env(i)}
            slot = ReplicaSlot(args, own_env, subprocess.DEVNULL, backoff=backoff or Backoff())
            slot.index, slot.address = i, address
            self.slots.append(slot)
        self._on_exit = on_exit
        self._poll_s = poll_interval_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.slots]

    def _start(self, slot: ReplicaSlot) -> None:
        slot.start()
        log.info("replica %d started (pid %s) on %s", slot.index, slot.pid, slot.address)

    async def start(self) -> None:
        for slot in self.slots:
            self._start(slot)
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            for slot in self.slots:
                was = slot.restarts
                code = slot.check(now)
                if slot.restarts != was:
                    log.info("replica %d started (pid %s) on %s", slot.index, slot.pid, slot.address)
                if code is not None:
                    self._crashed(slot, code, now)
            await asyncio.sleep(self._poll_s)

    def _crashed(self, slot: ReplicaSlot, code: int, now: float) -> None:
        if code == EXIT_DATA_LOSS:
            # It refused a model whose bytes are not the version's (its error line is above): every restart
            # would read the same bytes, so the slot stays empty and the others keep serving.
            log.error("replica %d (pid %s) refused a corrupt model: not restarting it", slot.index, slot.pid)
            slot.give_up()
        else:
            delay = slot.restart_later(now)
            log.warning(
                "replica %d (pid %s) exited with %s; restarting in %.1fs", slot.index, slot.pid, code, delay
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
        for pid in await stop_together(procs, timeout_s):
            log.warning("replica pid %d did not stop within %.0fs: killing it", pid, timeout_s)
