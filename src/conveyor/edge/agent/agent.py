"""The edge agent's loop (docs/edge.md, "Consistency"): ask what to serve, get it, verify it, swap it in,
report; keep serving the last good version whatever fails.

Each turn: one conditional poll; if the node does not serve the announced version, the signature policy is
checked on the announced digest (before a byte is downloaded), the artifact comes from the cache or a
resumable download, its SHA-256 must equal the announced digest, and only then does the local server load it
(fully, beside the old one) and switch to it. A version refused for its signature, or one that does not load,
is not tried again until the control plane announces something else; a download that was cut or corrupted is
tried again at the next turn. The heartbeat after each turn says what the node serves and why it refused.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from conveyor import errors
from conveyor.edge.agent.backoff import next_poll_s
from conveyor.edge.agent.cache import CacheEntry, EdgeCache
from conveyor.edge.agent.download import download
from conveyor.edge.agent.poller import ControlPlaneLink, Desired
from conveyor.security.signing import Signature, policy_problem, trusted_keys

log = logging.getLogger("conveyor.edge")


class Serving(Protocol):
    """The local V2 server the agent swaps versions into (targets/edge_node.py)."""

    async def swap(self, entry: CacheEntry) -> None:
        """Load ``entry`` fully, then route to it; the old version finishes what it has in flight. Raises
        (a ConveyorError naming why) when it does not load: the old version stays."""

    def counts(self) -> tuple[int, int]:
        """(inference requests answered, of which failed) since the process started."""
        ...


@dataclass(frozen=True, slots=True)
class AgentOptions:
    name: str
    deployment: str
    labels: dict[str, str]
    interval_s: float = 5.0
    max_backoff_s: float = 30.0
    require_signed: bool = False
    """The node's own rule (CONVEYOR_REQUIRE_SIGNED_MODELS), whatever the deployment says."""
    trusted_dir: Path | None = None
    agent_version: str | None = None


class EdgeAgent:
    def __init__(
        self,
        options: AgentOptions,
        link: ControlPlaneLink,
        cache: EdgeCache,
        serving: Serving,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options
        self.link = link
        self.cache = cache
        self.serving = serving
        self.address: str | None = None
        self.serving_entry: CacheEntry | None = None
        self.desired: Desired | None = None
        self.problem: str | None = None
        """Why the node does not serve the announced version (or cannot reach the control plane)."""
        self._refused: tuple[str, str] | None = None  # (ETag, why) of an announcement refused for good
        self._registered = False
        self._registered_address: str | None = None
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self.turns = 0

    # -- lifecycle --
    async def start_from_cache(self) -> None:
        """Serve what was served last (before the port opens): a restart needs no control plane."""
        entry = self.cache.current()
        if entry is None:
            return
        try:
            await self.serving.swap(entry)
        except errors.ConveyorError as exc:
            self.problem = f"the cached {entry.label} does not load: {exc.message}"
            log.error("%s", self.problem)
            return
        self.serving_entry = entry
        log.info("serving %s from the cache", entry.label)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="conveyor-edge-agent")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.link.close()

    def address_known(self, address: str) -> None:
        """Where the local server listens: the next turn registers again, saying so."""
        self.address = address

    # -- the loop --
    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self.turn()
                failures = 0
            except errors.Unavailable as exc:
                failures += 1
                self.problem = exc.message
                log.warning("%s", exc.message)
            except errors.ConveyorError as exc:  # refused: the token, the labels, no such deployment
                failures += 1
                self.problem = exc.message
                log.warning("%s", exc.message)
            except Exception as exc:  # the loop must outlive any one surprise; the node keeps serving
                failures += 1
                self.problem = f"{type(exc).__name__}: {exc}"
                log.exception("edge agent turn failed")
            await self._report()
            self.turns += 1
            o = self.options
            await asyncio.sleep(next_poll_s(failures, o.interval_s, o.max_backoff_s, self._rng))

    async def turn(self) -> None:
        o = self.options
        if not self._registered or self._registered_address != self.address:
            address = self.address  # it may become known while the registration is under way
            await self.link.register(o.name, o.deployment, o.labels, address, o.agent_version)
            self._registered, self._registered_address = True, address
        etag = self.desired.etag if self.desired is not None else None
        try:
            found = await self.link.desired(o.name, etag)
        except errors.NotFound as exc:
            if "is not registered" in exc.message:
                self._registered = False  # forgotten (conveyor delete edge, a restore): register next turn
            raise
        if found is not None:
            self.desired = found
        wanted = self.desired
        if wanted is None:
            return
        current = self.serving_entry
        if current is not None and current.sha256 == wanted.sha256 and current.version == wanted.version:
            self.problem = None
            return
        if self._refused is not None and self._refused[0] == wanted.etag:
            self.problem = self._refused[1]  # refused for good (signature, load) until another announcement
            return
        await self._move_to(wanted)

    async def _move_to(self, wanted: Desired) -> None:
        label = wanted.label
        problem = self._signature_problem(wanted)
        if problem is not None:
            self._refuse(wanted, f"refused {label}: {problem}; kept {self._serving_label()}")
            return
        entry = self.cache.find(wanted.model, wanted.version, wanted.sha256)
        if entry is None:
            partial = self.cache.partial(wanted.sha256)
            try:
                got = await download(
                    self.link.client, wanted.artifact, partial, wanted.sha256, wanted.size, label
                )
            except errors.IntegrityError as exc:
                raise errors.Unavailable(f"{exc.message}; kept {self._serving_label()}") from None
            entry = self.cache.admit(wanted.model, wanted.version, wanted.sha256, got.path)
        try:
            await self.serving.swap(entry)
        except errors.ConveyorError as exc:
            self._refuse(
                wanted, f"refused {label}: it does not load: {exc.message}; kept {self._serving_label()}"
            )
            return
        previous, self.serving_entry = self.serving_entry, entry
        self.cache.set_current(entry)
        self.cache.prune()
        self.problem = None
        log.info("now serving %s (was %s)", label, previous.label if previous else "nothing")

    def _signature_problem(self, wanted: Desired) -> str | None:
        """Why the announced version may not run here under the signing policy (the deployment's
        requireSignedModels or this node's own), checked with this node's trusted keys; None if it may."""
        if not (wanted.require_signed or self.options.require_signed):
            return None
        trusted = {} if self.options.trusted_dir is None else trusted_keys(self.options.trusted_dir)
        if not trusted:
            return (
                f"signed models are required and no key is trusted on this node ({self.options.trusted_dir})"
            )
        signatures = [Signature(k, s) for k, s in wanted.signatures]
        return policy_problem(wanted.model, wanted.version, wanted.sha256, signatures, trusted)

    def _refuse(self, wanted: Desired, why: str) -> None:
        self._refused = (wanted.etag, why)
        self.problem = why
        log.error("%s", why)

    def _serving_label(self) -> str:
        return self.serving_entry.label if self.serving_entry is not None else "nothing"

    # -- reporting --
    def heartbeat(self) -> dict[str, Any]:
        requests, failed = self.serving.counts()
        entry = self.serving_entry
        health = "empty" if entry is None else ("degraded" if self.problem else "serving")
        return {
            "version": entry.version if entry is not None else None,
            "health": health,
            "requests": requests,
            "failed": failed,
            "problem": self.problem,
            "cached": [e.version for e in self.cache.entries()][-64:],
        }

    async def _report(self) -> None:
        if not self._registered:
            return
        try:
            await self.link.heartbeat(self.options.name, self.heartbeat())
        except errors.NotFound:
            self._registered = False
        except errors.ConveyorError as exc:
            log.info("heartbeat not delivered: %s", exc.message)
