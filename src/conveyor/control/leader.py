"""Leader election among the control planes on one registry: only the holder of the ``control-plane`` lease
(registry/leases.py) acts — reconciles, runs rollouts, evaluates alerts. The others follow: they answer the
management API's reads and refuse its writes with 503 naming the leader, and take over when its lease expires.
One that follows because it could not write the lease itself refuses them with that error (507 on a full
disk), which is what the caller can act on.

A holder renews every ``ttl/3`` and counts its lease from just before each renewal, less a margin of
``ttl/6`` for an action batch under way: the reconciler, the rollout controller and the alert loop ask
``is_leader`` before every batch, so a leader that cannot renew (database gone, process stalled) stops acting
before the database would let a follower take the lease.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from conveyor import errors
from conveyor.control import API_HEADER
from conveyor.frontend.http_errors import status_for
from conveyor.registry.leases import Lease, LeaseStore

log = logging.getLogger("conveyor.control")
LEASE = "control-plane"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_FOLLOWER_WRITES = frozenset({"/api/v1/gateways/report"})
"""Writes a follower still takes: its own gateways' load reports (they change nothing in the registry)."""


def holder_id(home: Path) -> str:
    """One id per machine and home: a restarted control plane of the same home takes its lease back at once
    (the home's lock file guarantees one live control plane per home)."""
    return f"{socket.gethostname()}:{home.resolve()}"


class LeaderElection:
    """Campaigns for the lease in the background; ``is_leader`` says whether this process may act now."""

    def __init__(
        self,
        leases: LeaseStore,
        holder: str,
        ttl_s: float,
        *,
        address: str | None = None,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self.holder = holder
        self.ttl_s = ttl_s
        self.address = address
        self.on_change = on_change
        """Told True when this process becomes the leader and False when it stops being it."""
        self._clock = clock
        self._valid_until = 0.0
        self._last_try = 0.0
        self._was_leader = False
        self.leader: Lease | None = None
        """The lease as last seen: this process's or another's (None: nobody has held it)."""
        self.problem: errors.ConveyorError | None = None
        """Why the last try to take or renew the lease failed (the database refused: disk full, gone)."""
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._clock() < self._valid_until

    async def campaign(self) -> bool:
        """One try to take or renew the lease; whether this process leads now."""
        started = self._last_try = self._clock()
        try:
            lease = await asyncio.to_thread(self.leases.acquire, LEASE, self.holder, self.ttl_s, self.address)
            if lease is not None:
                self._valid_until = started + self.ttl_s - self.ttl_s / 6
                self.leader = lease
            else:
                self._valid_until = 0.0
                self.leader = await asyncio.to_thread(self.leases.current, LEASE)
            self.problem = None
        except errors.ConveyorError as exc:  # the database is away: what we hold lapses by itself
            self.problem = exc
            log.warning("leader election: %s", exc.message)
        self._notice()
        return self.is_leader

    def _notice(self) -> None:
        leading = self.is_leader
        if leading == self._was_leader:
            return
        self._was_leader = leading
        if leading:
            term = self.leader.term if self.leader is not None else "?"
            log.warning("this control plane is the leader now (%s, term %s)", self.holder, term)
        else:
            log.warning("this control plane is no longer the leader; following %s", self.describe_leader())
        if self.on_change is not None:
            self.on_change(leading)

    async def start(self) -> None:
        """Campaign once now (a lone control plane leads from its first step), then every ``ttl/3``."""
        await self.campaign()
        self._task = asyncio.create_task(self._run(), name="leader-election")

    async def _run(self) -> None:
        while True:  # every ttl/3 from the start of the last try, however long that try took
            await asyncio.sleep(max(0.0, self._last_try + self.ttl_s / 3 - self._clock()))
            await self.campaign()

    async def stop(self) -> None:
        """Stop campaigning and hand the lease over at once (a follower takes it at its next try)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.is_leader:
            self._valid_until = 0.0
            try:
                await asyncio.to_thread(self.leases.release, LEASE, self.holder)
            except errors.ConveyorError as exc:
                log.warning("could not release the leader lease (it expires by itself): %s", exc.message)
            self._notice()

    def describe_leader(self) -> str:
        lease = self.leader
        if lease is None or lease.holder == self.holder or lease.expired:
            return "nobody yet"
        return lease.holder + (f" at {lease.address}" if lease.address else "")

    def status(self) -> dict[str, Any]:
        """For /api/v1/health: whether this process leads, and who does."""
        lease = self.leader
        other = lease is not None and lease.holder != self.holder and not lease.expired
        return {
            "leader": self.is_leader,
            "holder": self.holder,
            "leaseSeconds": self.ttl_s,
            "current": None
            if lease is None or not (self.is_leader or other)
            else {"holder": lease.holder, "address": lease.address, "term": lease.term},
        }


class FollowerRefusesWrites:
    """Pure ASGI: while this control plane follows, a write to the management API is answered 503 with
    ``Retry-After`` and the leader's holder id and address, rather than proxied: a hidden hop would need the
    leader reachable from here and the caller's token forwarded, and a client or load balancer that sees
    the answer (or /api/v1/health's ``leader``) can send writes to the leader itself."""

    def __init__(self, app: Any, election: LeaderElection) -> None:
        self.app = app
        self.election = election

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in _READS
            or not scope["path"].startswith("/api/v1/")
            or scope["path"] in _FOLLOWER_WRITES
            or self.election.is_leader
        ):
            await self.app(scope, receive, send)
            return
        leader, problem = self.election.leader, self.election.problem
        if problem is not None:
            # It follows because the lease could not be written: say why (a full disk is 507, as any write).
            status = status_for(problem)
            message = f"{problem.message} (the leader lease could not be renewed, so no changes are taken)"
        else:
            status = 503
            message = (
                "this control plane is a follower and does not take changes; the leader is "
                f"{self.election.describe_leader()}"
            )
        body = orjson.dumps(
            {
                "error": message,
                "leader": None
                if leader is None or leader.expired
                else {"holder": leader.holder, "address": leader.address},
            }
        )
        retry = max(1, round(self.election.ttl_s / 3))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry).encode()),
                    (API_HEADER.encode(), b"v1"),  # a Conveyor answer: the CLI shows its error line
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
