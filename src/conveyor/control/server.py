"""``conveyor server``: the management API and the reconciler in one process, one per CONVEYOR_HOME.

On SIGTERM / Ctrl-C the API stops and the reconciler stops; the replicas keep serving (a restarted control
plane adopts them) unless the process was started ``owned`` by ``conveyor up``, which stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from conveyor.control.leader import FollowerRefusesWrites, LeaderElection, holder_id
from conveyor.control.metrics_routes import metrics_routes
from conveyor.errors import Conflict, Unavailable, disk_full_as_error
from conveyor.frontend.uvicorn_server import AnnouncingServer, tls_config
from conveyor.observe.aggregate import StackScraper
from conveyor.observe.history import StackHistory
from conveyor.settings import Settings
from conveyor.tasks import cancel_all

if TYPE_CHECKING:
    from conveyor.security.tls import ServerTls

log = logging.getLogger("conveyor.control")
GRACEFUL_SHUTDOWN_S = 3


@contextlib.contextmanager
def control_plane_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run/controlplane.lock`` for the process's life: a second control plane on the home fails."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "controlplane.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise Conflict(
                f"another control plane (pid {holder}) is running for {run_dir.parent}; "
                "stop it first or use another CONVEYOR_HOME"
            ) from None
        with disk_full_as_error(str(path)):  # the first write of `up` on a full home: one line, not OSError
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def build_control_plane(settings: Settings, *, owned: bool = False, address: str | None = None) -> Any:
    """The management API app with the reconciler started and stopped in its lifespan; it acts only while
    it holds the registry's leader lease (control/leader.py), announcing ``address`` as where it answers."""
    from conveyor.control.management import create_api
    from conveyor.control.reconciler import Reconciler
    from conveyor.registry import Registry
    from conveyor.targets.select import control_plane_targets

    registry = Registry.from_settings(settings)
    reconciler = Reconciler(registry, settings, control_plane_targets(settings))
    from conveyor.security.credentials import ensure_admin_token

    admin_token = ensure_admin_token(registry, settings)  # first start: the local admin token, 0600
    app = create_api(registry, reconciler, settings)
    scraper, history = _stack_metrics(settings, reconciler)
    app.include_router(metrics_routes(scraper, app.state.auth))
    from conveyor.control.alerting import AlertLoop

    alerting = AlertLoop(registry, history, settings)  # evaluates the rules over what the scraper adds
    from conveyor.control.rollouts import RolloutController

    rollouts = RolloutController(registry, history, reconciler)  # judges over the same history
    reconciler.rollouts = rollouts
    election = _elect(settings, registry, reconciler, address)
    rollouts.may_act = alerting.may_act = reconciler.may_act
    app.add_middleware(FollowerRefusesWrites, election=election)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            await election.start()  # a lone control plane leads from its first step
            await rollouts.reload()  # the first table after a restart carries the rollouts' splits
            await reconciler.start()
            scraping = asyncio.create_task(scraper.run(history, settings.metrics_scrape_interval_s))
            await alerting.start()
            await rollouts.start()
            try:
                yield state
            finally:
                await rollouts.stop()
                await alerting.stop()
                await cancel_all([scraping])
                await scraper.close()
                await reconciler.stop(stop_replicas=owned)
                await election.stop()  # hands the lease over: a follower takes over at once
                registry.close()

    app.router.lifespan_context = lifespan
    app.state.reconciler = reconciler
    app.state.history = history  # what alerts, the dashboard and describe read
    app.state.rollouts = rollouts
    app.state.admin_token = admin_token
    app.state.election = election
    return app


def _elect(settings: Settings, registry: Any, reconciler: Any, address: str | None) -> LeaderElection:
    """The leader election of this control plane, wired to what acts and what reports it."""

    def on_change(leading: bool) -> None:
        if leading:  # desired state and rollouts may have moved while another led: read them again
            reconciler.changed()

    election = LeaderElection(
        registry.leases,
        holder_id(settings.home),
        settings.leader_lease_s,
        address=address,
        on_change=on_change,
    )
    reconciler.election = election
    reconciler.metrics.leader = lambda: (election.holder, election.is_leader)
    return election


def _stack_metrics(settings: Settings, reconciler: Any) -> tuple[StackScraper, StackHistory]:
    """The scraper of the stack's processes (with the stack's own token for the gateways) and the history
    it feeds every ``metrics_scrape_interval_s``."""
    from conveyor.security.credentials import stack_token
    from conveyor.security.tls import client_context

    ca = settings.tls_ca_file or settings.tls_cert_file  # a gateway of this stack serves its certificate
    scraper = StackScraper(
        reconciler.gateways,
        reconciler.replicas,
        reconciler.metrics,
        token=lambda: stack_token(settings),
        verify=client_context(ca) if ca is not None else True,
        timeout_s=min(2.0, settings.metrics_scrape_interval_s),
    )
    return scraper, StackHistory()


def run_control_plane(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    owned: bool = False,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
    tls: ServerTls | None = None,
    on_admin_token: Callable[[Path, bool], None] | None = None,
) -> None:
    """Serve the management API until SIGINT / SIGTERM; over TLS only (https://) with ``tls``.
    ``on_admin_token(path, created)`` is told where the local admin token is, and whether it is new."""
    with control_plane_lock(settings.home / "run"):
        scheme = "https" if tls is not None else "http"
        app = build_control_plane(settings, owned=owned, address=f"{scheme}://{host}:{port}")
        if on_admin_token is not None:
            on_admin_token(*app.state.admin_token)
        from conveyor.frontend.connections import DeadlineHttpProtocol, connection_protocol

        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            # Request-head deadlines and connections per client, as on the gateway (docs/security.md, Limits).
            http=connection_protocol(DeadlineHttpProtocol, settings),
            timeout_keep_alive=settings.keep_alive_timeout_s,
            log_level=log_level,
            log_config=None,  # uvicorn's lines go through the process's handler (observe/logs.py)
            loop="uvloop",
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            **tls_config(tls),
        )
        server = AnnouncingServer(config, on_ready)
        server.run()
        if not server.started:
            raise Unavailable(f"could not start the management API on {host}:{port} (see the log above)")
