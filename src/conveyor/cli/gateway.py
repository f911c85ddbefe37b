"""``conveyor gateway``: the V2 entry point whose routes the control plane pushes (docs/control-plane.md)."""

from __future__ import annotations

import functools
import os
from typing import Annotated

import typer

from conveyor.cli.certs import TlsCertOpt, TlsKeyOpt, with_tls
from conveyor.cli.client import CaOpt, ca_file
from conveyor.cli.output import console
from conveyor.settings import get_settings

DEFAULT_CONTROL_PLANE = "http://127.0.0.1:8000"


def gateway(
    control_plane: Annotated[
        str | None,
        typer.Option(
            "--control-plane",
            metavar="URL",
            help="Management API of the control plane to follow (default: CONVEYOR_URL, else "
            f"{DEFAULT_CONTROL_PLANE}).",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port (V2 REST).", min=0, max=65535)] = 8080,
    grpc_port: Annotated[
        int | None, typer.Option(help="Also serve V2 gRPC on this port (0: any free port).", min=0, max=65535)
    ] = None,
    ready_when: Annotated[
        str | None,
        typer.Option(
            "--ready-when",
            metavar="all|any",
            help="When /v2/health/ready answers 200: all (every deployment routed has a ready replica or is "
            "scaled to zero; strict, as Triton) or any (at least one has). Default: "
            "CONVEYOR_GATEWAY_READY_WHEN, else all.",
        ),
    ] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    ca: CaOpt = None,
) -> None:
    """Serve every deployment of the control plane over V2 REST (and gRPC) until Ctrl-C.

    The routing table comes from the control plane's watch stream and in-flight load goes back to it every
    0.5 s. When the control plane is away the gateway keeps serving with the last table and reconnects;
    Ctrl-C or SIGTERM lets in-flight requests finish, then exits. An https control plane's certificate is
    verified with --ca (else CONVEYOR_TLS_CA_FILE, else the system's trust store).
    """
    from conveyor.cli.client import check_url, verify_for
    from conveyor.gateway.controlled import serve_controlled_gateway
    from conveyor.observe.logs import configure_logging
    from conveyor.targets.inprocess import LoadedUpstream

    settings = get_settings()
    if ready_when is not None:
        if ready_when not in ("all", "any"):
            raise typer.BadParameter(f"must be all or any, got {ready_when!r}", param_hint="--ready-when")
        settings = settings.model_copy(update={"gateway_ready_when": ready_when})
    settings, tls = with_tls(settings, tls_cert, tls_key)
    configure_logging(settings, component="gateway", instance=str(port or os.getpid()))  # one writer per file
    from conveyor.observe import otlp

    otlp.start(settings, "gateway", str(port or os.getpid()))  # spans of sampled requests, when configured
    control_url = check_url(control_plane or settings.url or DEFAULT_CONTROL_PLANE)
    verify = verify_for(control_url, ca_file(settings.tls_ca_file))
    from conveyor.ports import check_ports_free

    check_ports_free(host, {"--port": port, "--grpc-port": grpc_port})

    def on_ready(url: str) -> None:
        console.print(
            f"gateway listening on {url} (routes from {control_url})", highlight=False, soft_wrap=True
        )

    def on_grpc_ready(address: str) -> None:
        console.print(f"gateway V2 gRPC on {address}", highlight=False, soft_wrap=True)

    serve_controlled_gateway(
        control_url,
        settings,
        host=host,
        port=port,
        grpc_port=grpc_port,
        on_ready=on_ready,
        on_grpc_ready=on_grpc_ready,
        load_inprocess=functools.partial(LoadedUpstream, settings=settings),
        tls=tls,
        verify=verify,
    )


if __name__ == "__main__":  # tests run it alone; the conveyor command registers gateway()
    typer.run(gateway)
