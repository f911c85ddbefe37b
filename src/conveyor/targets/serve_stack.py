"""The local serving stack behind ``conveyor serve``: a gateway plus its replicas, in-process or supervised.

Placement ``auto`` keeps one replica inside the gateway process (no hop: measured fastest, docs/serving.md)
and runs ``--replicas N >= 2`` as separate processes (isolation, restart on crash).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from conveyor.errors import InvalidInput
from conveyor.gateway import Gateway, InProcessUpstream, OutlierState, Replica, Route, RoutingTable
from conveyor.gateway.app import create_gateway_app, serve_gateway
from conveyor.gateway.auth import GatewayAuth
from conveyor.gateway.channel import ChannelUpstream
from conveyor.settings import Settings
from conveyor.targets.artifacts import materialize
from conveyor.targets.local import LocalTarget

if TYPE_CHECKING:
    from conveyor.runtime import OnnxModel
    from conveyor.security.tls import ServerTls

Placement = Literal["auto", "inprocess", "process"]
# Settings a replica process must share with the gateway's, passed as CONVEYOR_* variables (the replica's
# Settings reads them), so CLI overrides such as --max-batch-size reach every replica.
_REPLICA_SETTINGS = (
    "max_body_bytes",
    "max_elements",
    "intra_op_threads",
    "device",  # cpu, cuda[:N]: replicas pinned to one GPU each get their own (runtime/providers.py)
    "max_batch_size",
    "max_queue_delay_us",
    "max_queue_size",
    "request_timeout_ms",
    "cache_max_entries",  # the response cache (runtime/cache.py), 0: none
    "cache_max_bytes",
    "cache_ttl_s",
)


def resolve_placement(placement: Placement, replicas: int) -> Literal["inprocess", "process"]:
    if replicas < 1:
        raise InvalidInput(f"--replicas must be at least 1, got {replicas}")
    if placement == "inprocess" and replicas > 1:
        raise InvalidInput("--placement inprocess runs one replica; use --placement process for several")
    if placement == "auto":
        return "inprocess" if replicas == 1 else "process"
    return placement


@dataclass(frozen=True, slots=True)
class Served:
    """What the stack serves, for the CLI's table."""

    name: str
    version: str | None


def _alias_of(ref: str) -> str | None:
    path = Path(ref)
    if path.suffix and path.exists():
        return None
    from conveyor.registry.refs import parse_ref

    return parse_ref(ref).alias


def serve_local(
    refs: Sequence[str],
    settings: Settings,
    *,
    replicas: int = 1,
    placement: Placement = "auto",
    host: str = "127.0.0.1",
    port: int = 8080,
    grpc_port: int | None = None,
    trust_pickle: bool = False,
    sample: Any = None,
    on_loaded: Callable[[list[Served]], None] | None = None,
    on_ready: Callable[[str], None] | None = None,
    on_grpc_ready: Callable[[str], None] | None = None,
    tls: ServerTls | None = None,
    auth: GatewayAuth | None = None,
) -> None:
    """Serve ``refs`` until SIGINT / SIGTERM; then drain the gateway, stop the replicas, and return. With
    ``tls`` the gateway serves https:// and gRPC over TLS (its replicas stay on local unix sockets); with
    ``auth`` callers need a token it accepts (else anyone who reaches the port may call)."""
    where = resolve_placement(placement, replicas)
    run_dir = Path(tempfile.mkdtemp(prefix="conveyor-stack-"))
    try:
        if where == "inprocess":
            app = _inprocess_app(refs, settings, trust_pickle, sample, on_loaded)
        else:
            app = _process_app(refs, settings, replicas, run_dir, trust_pickle, sample, on_loaded)
        app.state.gateway.auth = auth
        serve_gateway(
            app,
            host=host,
            port=port,
            on_ready=on_ready,
            grpc_port=grpc_port,
            on_grpc_ready=on_grpc_ready,
            max_message_bytes=settings.max_body_bytes,
            tls=tls,
        )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _gateway(
    served: list[Served], replicas: list[Replica], aliases: dict[tuple[str, str], str], settings: Settings
) -> Gateway:
    routes = [Route(s.name, s.version, list(replicas)) for s in served]
    return Gateway(RoutingTable(routes, aliases), health_interval_s=settings.health_interval_s)


def _inprocess_app(
    refs: Sequence[str],
    settings: Settings,
    trust_pickle: bool,
    sample: Any,
    on_loaded: Callable[[list[Served]], None] | None,
) -> Any:
    import conveyor
    from conveyor.server.dataplane import DataPlane

    loaded = [conveyor.load(r, settings=settings, trust_pickle=trust_pickle, sample=sample) for r in refs]
    aliases = {
        (m.name, a): m.version
        for r, m in zip(refs, loaded, strict=True)
        if m.version is not None and (a := _alias_of(r)) is not None
    }
    served = list({(m.name, m.version): Served(m.name, m.version) for m in loaded}.values())
    if on_loaded is not None:
        on_loaded(served)
    sessions = {(m.name, m.version): m.session for m in loaded}  # a version named twice loads once
    _watch(list(sessions.values()), settings)
    plane = DataPlane.from_settings(list(sessions.values()), settings)
    replica = Replica(InProcessUpstream(plane), OutlierState(settings.eject_after_failures))
    lifespan = contextlib.AsyncExitStack()

    async def startup() -> None:
        await lifespan.enter_async_context(plane)

    return create_gateway_app(
        _gateway(served, [replica], aliases, settings), settings, startup=startup, shutdown=lifespan.aclose
    )


def _watch(sessions: list[OnnxModel], settings: Settings) -> None:
    """Attach to each registered version the drift monitor its reference statistics allow (the defaults:
    ``conveyor serve`` has no spec); model files imported here have none."""
    from conveyor.api import open_registry
    from conveyor.observe.monitoring import monitor_from, monitoring_document

    versions = [m for m in sessions if m.version is not None]
    if not versions:
        return
    with open_registry(settings) as registry:
        for m in versions:
            reference = registry.resolve(f"{m.name}:{m.version}").metadata.get("reference")
            doc = monitoring_document(reference if isinstance(reference, dict) else None)
            if doc is not None:
                m.observer = monitor_from(doc, m.name, m.version or "")


def _process_app(
    refs: Sequence[str],
    settings: Settings,
    replicas: int,
    run_dir: Path,
    trust_pickle: bool,
    sample: Any,
    on_loaded: Callable[[list[Served]], None] | None,
) -> Any:
    files, aliases = materialize(list(refs), run_dir, settings, trust_pickle=trust_pickle, sample=sample)
    served = [Served(f.name, f.version) for f in files]
    if on_loaded is not None:
        on_loaded(served)
    command = [sys.executable, "-m", "conveyor.server"]
    for f in files:
        command += f.launch_args
    env = {f"CONVEYOR_{field.upper()}": str(getattr(settings, field)) for field in _REPLICA_SETTINGS}
    gateway: Gateway | None = None

    def on_exit(slot: Any) -> None:
        if gateway is not None:
            gateway.eject(slot.address)  # at once: no request should wait for probes to notice

    pinning = _gpu_pinning(settings)
    target = LocalTarget(command, replicas, run_dir, on_exit=on_exit, env=env, slot_env=pinning)
    members = [
        Replica(ChannelUpstream.for_settings(a, settings), OutlierState(settings.eject_after_failures))
        for a in target.addresses
    ]
    gateway = _gateway(served, members, aliases, settings)
    return create_gateway_app(gateway, settings, startup=target.start, shutdown=target.stop)


def _gpu_pinning(settings: Settings) -> Callable[[int], dict[str, str]] | None:
    """On a GPU: replica number i's CUDA_VISIBLE_DEVICES (one GPU each, in turn; or the one asked for)."""
    from conveyor.runtime.providers import Choice, parse_device, probe_capabilities, replica_env

    device = parse_device(settings.device)
    if not device.is_gpu:
        return None
    capabilities = probe_capabilities()  # already asked by the CLI: cached
    return lambda slot: replica_env(Choice(device), capabilities, slot, settings.cuda_visible_devices)
