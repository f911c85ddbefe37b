"""A gateway process whose routing table comes from the control plane (``conveyor gateway``).

It waits a little for the first table before opening its port (then opens it anyway: requests get 404 or 503
until a table arrives), serves until SIGINT / SIGTERM, lets in-flight requests finish, then stops following.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from conveyor.gateway.app import create_gateway_app, serve_gateway
from conveyor.gateway.channel import ChannelUpstream
from conveyor.gateway.control import ControlPlaneClient
from conveyor.gateway.gateway import Gateway, LoadInProcess
from conveyor.settings import Settings

if TYPE_CHECKING:
    import ssl

    from conveyor.security.tls import ServerTls

log = logging.getLogger("conveyor.gateway")
FIRST_TABLE_TIMEOUT_S = 10.0


def serve_controlled_gateway(
    control_url: str,
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    grpc_port: int | None = None,
    on_ready: Callable[[str], None] | None = None,
    on_grpc_ready: Callable[[str], None] | None = None,
    first_table_timeout_s: float = FIRST_TABLE_TIMEOUT_S,
    load_inprocess: LoadInProcess | None = None,
    tls: ServerTls | None = None,
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Serve V2 REST (and gRPC with ``grpc_port``) over the table the control plane at ``control_url`` pushes,
    until SIGINT / SIGTERM. ``on_ready`` gets the http URL once the port listens; ``load_inprocess`` loads
    the replicas of deployments with placement inprocess (without it, a table listing one is refused).
    With ``tls`` the gateway serves https:// (and gRPC over TLS); ``verify`` is the SSL context an https
    control plane's certificate is checked with."""
    gateway = Gateway(
        None,
        health_interval_s=settings.health_interval_s,
        eject_after=settings.eject_after_failures,
        connect=functools.partial(ChannelUpstream.for_settings, settings=settings),
        ready_when=settings.gateway_ready_when,
        load_inprocess=load_inprocess,
        second_send_timeout_s=settings.request_timeout_ms / 1000 + 1.0,  # as the channel's own deadline
    )
    from conveyor.security.credentials import client_token

    # A token with the gateway role (or admin: the local one `conveyor up` made) to follow the table.
    token = client_token(settings, control_url)
    client = ControlPlaneClient(gateway, control_url, verify=verify, token=token)

    async def startup() -> None:
        await client.start()
        if not await client.wait_for_table(first_table_timeout_s):
            log.warning(
                "no routing table from %s within %gs; serving anyway (404/503 until one arrives)",
                control_url,
                first_table_timeout_s,
            )

    def ready(url: str) -> None:
        client.url = url
        client.report_now()  # the control plane learns of this gateway (and its acknowledgement) at once
        if on_ready is not None:
            on_ready(url)

    def grpc_ready(address: str) -> None:
        client.grpc_url = address
        if on_grpc_ready is not None:
            on_grpc_ready(address)

    # The lifespan stops the client after uvicorn has drained: tables still apply while requests finish.
    app = create_gateway_app(gateway, settings, startup=startup, shutdown=client.stop, wait_ready=False)
    serve_gateway(
        app,
        host=host,
        port=port,
        on_ready=ready,
        grpc_port=grpc_port,
        on_grpc_ready=grpc_ready,
        max_message_bytes=settings.max_body_bytes,
        tls=tls,
    )
