"""The reconciler's deployment events (ReplicaFailed, ScaledUp, ...): logged at once, stored in the registry
by one background writer, so a slow or failing database never stalls a reconcile step."""

from __future__ import annotations

import asyncio
import logging

from conveyor import errors
from conveyor.registry import Registry

log = logging.getLogger("conveyor.control")
MAX_MESSAGE = 2000


class DeploymentEvents:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def add(self, deployment: str, kind: str, message: str) -> None:
        log.info("%s %s: %s", deployment, kind, message)
        self._queue.put_nowait((deployment, kind, message))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while True:
            item = await self._queue.get()
            await asyncio.to_thread(self._store, *item)

    def _store(self, deployment: str, kind: str, message: str) -> None:
        """Store one event; one the registry cannot take (a full disk, the database away) is logged, not
        retried: the writer must outlive it, and the event is in the log already (``add``)."""
        try:
            self.registry.deployments.record_event(deployment, kind, message[:MAX_MESSAGE])
        except errors.NotFound:  # deleted meanwhile
            pass
        except errors.ConveyorError as exc:
            log.warning("event %s of %s not stored: %s", kind, deployment, exc)

    async def flush(self) -> None:
        """Stop the writer and store what is left."""
        if self._task is not None:
            self._task.cancel()
        while not self._queue.empty():
            await asyncio.to_thread(self._store, *self._queue.get_nowait())
