"""The local V2 server of an edge node (``conveyor edge run``, docs/edge.md): a gateway with one in-process
replica, the same data plane ``conveyor serve --placement inprocess`` runs, whose version the edge agent
swaps.

A swap never fails a request: the new version is loaded beside the old one (a second route, not the
default), and only once it is admitted does the table make it the default; the old replica is retired, so
requests it has in flight finish on it before it closes (gateway.apply_table). A version that does not load
is taken out again and the old one goes on as if nothing happened.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from conveyor.edge.agent.cache import CacheEntry
from conveyor.errors import Unavailable
from conveyor.gateway.app import create_gateway_app, serve_gateway
from conveyor.gateway.gateway import READY_WHEN_ANY, Gateway
from conveyor.observe.recorder import REQUESTS
from conveyor.protocol.table import INPROCESS, InProcessLoad, ReplicaSpec, RouteSpec, TableSnapshot
from conveyor.settings import Settings
from conveyor.targets.inprocess import LoadedUpstream

if TYPE_CHECKING:
    from conveyor.security.tls import ServerTls

LOAD_TIMEOUT_S = 120.0
DEPLOYMENT = "edge"


class EdgeServing:
    """The gateway of an edge node and the version it routes to (agent.Serving)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway = Gateway(
            None,
            health_interval_s=settings.health_interval_s,
            eject_after=settings.eject_after_failures,
            ready_when=READY_WHEN_ANY,
            load_inprocess=lambda spec, loaded: LoadedUpstream(spec, loaded, settings=settings),
        )
        self.route: RouteSpec | None = None
        self._epoch = uuid.uuid4().hex[:12]
        self._generation = itertools.count(1)
        self._swapping = asyncio.Lock()

    async def swap(self, entry: CacheEntry) -> None:
        async with self._swapping:
            new = self._route_of(entry)
            old = self.route
            if old is not None and old.replicas[0].address == new.replicas[0].address:
                return
            if old is None or (old.name == new.name and old.version == new.version):
                # Nothing else to serve meanwhile (or the same name and version with other bytes: one route).
                self._apply([new])
                await self._wait_loaded(new, on_failure=[old] if old is not None else [])
            else:
                # Beside the old one, not the default: requests keep going to the old version meanwhile.
                self._apply([old, _not_default(new)])
                await self._wait_loaded(new, on_failure=[old])
                self._apply([new])  # the old replica retires: what it has in flight finishes on it
            self.route = new

    def counts(self) -> tuple[int, int]:
        answered = failed = 0
        for series in list(REQUESTS.series.values()):
            for code, n in list(series.codes.items()):
                answered += n
                if code != 200:
                    failed += n
        return answered, failed

    def _route_of(self, entry: CacheEntry) -> RouteSpec:
        s = self.settings
        load = InProcessLoad(
            model_file=entry.path,
            sha256=entry.sha256,
            model=entry.model,
            version=entry.version,
            max_batch_size=s.max_batch_size,
            max_queue_delay_us=s.max_queue_delay_us,
            max_queue_size=s.max_queue_size,
            request_timeout_ms=s.request_timeout_ms,
            intra_op_threads=s.intra_op_threads,
            max_elements=s.max_elements,
        )
        replica_id = f"{entry.model}-{entry.version}-{entry.sha256[:12]}"
        replica = ReplicaSpec(replica_id, f"{INPROCESS}{DEPLOYMENT}/{replica_id}", load)
        return RouteSpec(entry.model, entry.version, DEPLOYMENT, None, True, (replica,), None, public=True)

    def _apply(self, routes: list[RouteSpec]) -> None:
        snapshot = TableSnapshot(self._epoch, next(self._generation), tuple(routes))
        self.gateway.apply_table(snapshot.to_doc())

    async def _wait_loaded(self, route: RouteSpec, on_failure: list[RouteSpec]) -> None:
        """Until the route's replica is admitted; Unavailable (after restoring ``on_failure``) if its load
        failed or took longer than LOAD_TIMEOUT_S."""
        address = route.replicas[0].address
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOAD_TIMEOUT_S
        while loop.time() < deadline:
            replica = next((r for r in self.gateway.replicas if r.upstream.address == address), None)
            if replica is None:
                break
            if replica.health.admitted:
                return
            problem = getattr(replica.upstream, "problem", None)
            if problem is not None:
                self._restore(on_failure)
                raise Unavailable(problem)
            await asyncio.sleep(0.05)
            await self.gateway.check_health()
        self._restore(on_failure)
        raise Unavailable(f"{route.name}:{route.version} did not load within {LOAD_TIMEOUT_S:.0f}s")

    def _restore(self, routes: list[RouteSpec]) -> None:
        self._apply(routes)


def _not_default(route: RouteSpec) -> RouteSpec:
    return RouteSpec(
        route.name, route.version, route.deployment, None, False, route.replicas, None, public=True
    )


def serve_edge(
    serving: EdgeServing,
    *,
    startup: Callable[[], Awaitable[None]],
    shutdown: Callable[[], Awaitable[None]],
    host: str,
    port: int,
    on_ready: Callable[[str], None] | None = None,
    tls: ServerTls | None = None,
) -> None:
    """Serve V2 REST on ``host:port`` until SIGINT / SIGTERM: ``startup`` runs before the port opens (the
    cached version loads there), ``shutdown`` after in-flight requests finished."""
    app: Any = create_gateway_app(
        serving.gateway, serving.settings, startup=startup, shutdown=shutdown, wait_ready=False
    )
    serve_gateway(
        app,
        host=host,
        port=port,
        on_ready=on_ready,
        max_message_bytes=serving.settings.max_body_bytes,
        tls=tls,
    )
