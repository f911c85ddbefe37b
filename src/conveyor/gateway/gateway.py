"""The gateway: one entry point implementing InferenceService over replicas, wherever they run.

Routes by model version, balances with power of two choices, retries once on another replica when a connection
failed before an answer (inference is idempotent), ejects failing replicas and probes them back in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from conveyor.errors import Unavailable
from conveyor.gateway.balance import power_of_two
from conveyor.gateway.outlier import is_replica_fault
from conveyor.gateway.replica import Replica, inflight_of
from conveyor.gateway.routes import Route, RoutingTable
from conveyor.gateway.upstream import ConnectionFailed
from conveyor.server.dataplane import server_metadata
from conveyor.server.service import EncodedRequest, EncodedResponse

log = logging.getLogger("conveyor.gateway")


class Gateway:
    def __init__(
        self, table: RoutingTable, *, health_interval_s: float = 1.0, rng: random.Random | None = None
    ) -> None:
        self.table = table
        self.replicas: list[Replica] = list({id(r): r for t in table.routes for r in t.replicas}.values())
        self.health_interval_s = health_interval_s
        self._rng = rng or random.Random()
        self._metadata: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._health_task: asyncio.Task[None] | None = None

    # -- InferenceService --
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return all(any(r.admitted for r in route.replicas) for route in self.table.routes)

    def server_metadata(self) -> dict[str, Any]:
        return server_metadata()

    async def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        route = self.table.resolve(name, version)
        key = (route.name, route.version)
        meta = self._metadata.get(key)
        if meta is None:  # versions are immutable: ask a replica once
            meta = await self._pick(route, None).upstream.model_metadata(route.name, route.version)
            meta["versions"] = self.table.versions(route.name)
            self._metadata[key] = meta
        return dict(meta)

    async def model_ready(self, name: str, version: str | None) -> dict[str, Any]:
        route = self.table.resolve(name, version)
        self._pick(route, None)  # Unavailable when no replica of this version is admitted
        return {"name": name, "ready": True}

    async def infer(self, request: EncodedRequest) -> EncodedResponse:
        route = self.table.resolve(request.model, request.version)
        if request.version != route.version:  # default version or an alias: replicas see the real one
            request = EncodedRequest(
                route.name, route.version, request.body, request.json_length, request.request_id
            )
        first = self._pick(route, None)
        try:
            return await self._send(first, request)
        except ConnectionFailed as exc:
            log.warning("request %s: %s; retrying on another replica", request.request_id, exc)
        return await self._send(self._pick(route, first), request)

    # -- internals --
    def _pick(self, route: Route, exclude: Replica | None) -> Replica:
        ready = [r for r in route.replicas if r.health.admitted and r is not exclude]
        if not ready:
            what = route.name + (f":{route.version}" if route.version else "")
            extra = "other " if exclude is not None else ""
            raise Unavailable(f"no {extra}healthy replica of {what} is available")
        return power_of_two(ready, inflight_of, self._rng)

    async def _send(self, replica: Replica, request: EncodedRequest) -> EncodedResponse:
        replica.inflight += 1
        try:
            response = await replica.upstream.infer(request)
        except Exception as exc:
            if is_replica_fault(exc) and replica.health.failure():
                log.warning("replica %s ejected after %d failures", replica.name, replica.health.failures)
            raise
        finally:
            replica.inflight -= 1
        replica.health.success()
        return response

    # -- health --
    async def check_health(self) -> None:
        """Probe every replica once (concurrently) and admit or eject accordingly."""
        results = await asyncio.gather(*(r.upstream.probe() for r in self.replicas))
        for replica, passed in zip(self.replicas, results, strict=True):
            was = replica.health.admitted
            if replica.health.probe(passed):
                log.info("replica %s admitted", replica.name)
            elif was and not replica.health.admitted:
                log.warning("replica %s ejected: health probes failing", replica.name)

    def eject(self, address: str) -> None:
        """Take a replica out of rotation at once (its process is known to have exited)."""
        for r in self.replicas:
            if r.upstream.address == address:
                r.health.eject()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            try:
                await self.check_health()
            except Exception:  # the loop must outlive any one bad probe
                log.exception("health check failed")

    async def start(self) -> None:
        await self.check_health()
        self._health_task = asyncio.get_running_loop().create_task(self._health_loop())

    async def stop(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        for r in self.replicas:
            await r.upstream.close()

    async def wait_ready(self, timeout_s: float) -> bool:
        """Probe until every model version has an admitted replica or ``timeout_s`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.ready() and loop.time() < deadline:
            await asyncio.sleep(0.05)
            await self.check_health()
        return self.ready()
