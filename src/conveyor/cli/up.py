"""``conveyor up`` (the whole local stack) and ``conveyor server`` (the control plane alone)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli.certs import TlsCertOpt, TlsKeyOpt, with_tls
from conveyor.cli.output import console, err_console, titled_table
from conveyor.settings import get_settings

if TYPE_CHECKING:
    from conveyor.control.supervisor import Stack

READY_TIMEOUT_S = 180.0


def server(
    host: Annotated[str, typer.Option(help="Address the management API binds.")] = "127.0.0.1",
    api_port: Annotated[int, typer.Option(help="Port of the management API.", min=0, max=65535)] = 8000,
    owned: Annotated[
        bool,
        typer.Option(
            "--owned",
            help="Stop every replica when this process stops (what `conveyor up` asks). Without it the "
            "replicas keep serving and the next control plane adopts them.",
        ),
    ] = False,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    """Run the control plane: the management API (/api/v1, OpenAPI at /docs) and the reconciler.

    It starts, supervises, scales and updates the replicas of every deployment in the registry and pushes
    the routing table to gateways (`conveyor gateway`). One per CONVEYOR_HOME.
    """
    from conveyor.control.server import run_control_plane

    def on_ready(url: str) -> None:
        console.print(f"control plane listening on [bold]{url}[/] (API docs: {url}/docs)", highlight=False)
        from urllib.parse import urlsplit

        from conveyor.cli.dashboard import dashboard_url
        from conveyor.security.credentials import client_token, is_loopback_host

        # `up` on loopback opens signed in, as its CLI is (the token in the fragment never reaches a server).
        signed_in = owned and is_loopback_host(urlsplit(url).hostname)
        link = dashboard_url(url, client_token(settings, url) if signed_in else None)
        console.print(f"dashboard: {link}", markup=False, highlight=False, soft_wrap=True)

    from conveyor.observe.logs import configure_logging
    from conveyor.ports import check_ports_free

    settings, tls = with_tls(get_settings(), tls_cert, tls_key)
    check_ports_free(host, {"--api-port": api_port})
    if not owned:  # `conveyor up` said it already
        _warn_if_exposed(host)
    configure_logging(settings, component="control")

    def on_admin_token(path: Path, created: bool) -> None:
        what = "created an admin token in" if created else "admin token in"
        console.print(
            f"{what} [bold]{path}[/] (mode 0600; the CLI uses it for this stack; CONVEYOR_TOKEN overrides)",
            highlight=False,
            soft_wrap=True,
        )

    run_control_plane(
        settings,
        host=host,
        port=api_port,
        owned=owned,
        on_ready=on_ready,
        tls=tls,
        on_admin_token=on_admin_token,
    )


def up(
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Spec file to apply once the stack is up (kind: Deployment, ...)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address the gateway and the API bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Gateway HTTP port (V2 REST).", min=1, max=65535)] = 8080,
    api_port: Annotated[int, typer.Option(help="Management API port.", min=1, max=65535)] = 8000,
    grpc_port: Annotated[
        int | None, typer.Option(help="Also serve V2 gRPC on the gateway on this port.", min=1, max=65535)
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="With -f: wait until every deployment's replicas are ready.")
    ] = True,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    """Start the control plane and a gateway (and apply FILE); run until Ctrl-C, then stop it all cleanly.

    Clients call the gateway, e.g. POST http://127.0.0.1:8080/v2/models/NAME/infer; the CLI (apply, get,
    describe, scale, rollback, ...) talks to the management API on --api-port. Ctrl-C stops the gateway
    first (in-flight requests finish), then the control plane, which drains and stops the replicas.
    With --tls-cert and --tls-key (or CONVEYOR_TLS_CERT_FILE / _KEY_FILE) both serve https only.
    """
    from conveyor.control.supervisor import Child, Stack

    settings, tls = with_tls(get_settings(), tls_cert, tls_key)  # a bad file fails before anything starts

    documents: list[dict[str, Any]] = []
    if file is not None:
        from conveyor.spec import load_file

        documents = [r.to_dict() for r in load_file(file)]  # a bad file fails before anything starts
    _warn_if_exposed(host)
    from conveyor.observe import otlp
    from conveyor.observe.logs import configure_logging

    otlp.check(settings)  # a missing otel extra fails here, not in every process it starts
    configure_logging(settings)
    from conveyor.security.credentials import stack_token

    stack = Stack(
        host=host,
        api_port=api_port,
        port=port,
        grpc_port=grpc_port,
        tls=tls,
        ca_file=settings.tls_ca_file,
        token=lambda: stack_token(settings),
    )
    try:
        with console.status("Starting the control plane and the gateway…", spinner="dots"):
            _start(stack)
        # The control plane and the gateway each announced their URL as they started (and announce it again
        # if restarted): printing both again here said everything twice.
        if documents:
            _apply_and_wait(stack, documents, wait)
        console.print("Ctrl-C to stop", style="dim")

        def on_restart(child: Child, code: int | None) -> None:
            err_console.print(f"the {child.name} exited (code {code}); restarting it", highlight=False)

        stack.run_until_signalled(on_restart)
    finally:
        with console.status("Stopping: draining the gateway, then the replicas…", spinner="dots"):
            stack.stop()
    console.print("stopped")


def _start(stack: Stack) -> None:
    """Start the stack. A child that failed with one of the CLI's error codes (a full disk, a home in use)
    printed its one ``error:`` line already: exit with its code instead of adding a second line."""
    from conveyor.cli.output import EXIT_CODES
    from conveyor.errors import Unavailable

    try:
        stack.start()
    except Unavailable as exc:
        code = exc.details.get("exit_code")
        if code in set(EXIT_CODES.values()) - {EXIT_CODES["internal"]}:
            raise typer.Exit(code) from None
        raise


def _apply_and_wait(stack: Stack, documents: list[dict[str, Any]], wait: bool) -> None:
    from conveyor.cli.client import ApiClient
    from conveyor.cli.inspect import INFER_COLUMN, infer_url
    from conveyor.cli.waiting import wait_rolled_out
    from conveyor.errors import ConversionError, DeadlineExceeded
    from conveyor.security.credentials import stack_token
    from conveyor.settings import get_settings

    token = stack_token(get_settings())
    with ApiClient(stack.api_url, ca_file=stack.trust_file, token=token) as client:
        for result in client.post("/apply", {"documents": documents})["results"]:
            what = "configured" if result["changed"] else "unchanged"
            console.print(
                f"deployment/{result['name']} {what} (revision {result['revision']}, {result['model']})",
                highlight=False,
            )
        names = [d["metadata"]["name"] for d in documents if d.get("kind") == "Deployment"]
        if wait:
            try:
                wait_rolled_out(client, names, READY_TIMEOUT_S, quiet=True)
            except (DeadlineExceeded, ConversionError) as exc:
                # The stack stays up: the control plane keeps trying (with backoff) and says why in the
                # deployment's events; stopping here would hide them.
                err_console.print(f"[yellow]warning:[/] {exc.message}", highlight=False)
        endpoints = [e for e in client.get("/endpoints")["endpoints"] if e["name"] in names]
    rows = [
        [e["name"], e["model"], f"{e['replicas']['ready']}/{e['replicas']['desired']}", infer_url(e)]
        for e in endpoints
    ]
    columns = ("name", "model", "replicas", INFER_COLUMN)
    console.print(titled_table("Deployments", columns, rows))


def _warn_if_exposed(host: str) -> None:
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        err_console.print(
            f"[yellow]note:[/] serving on {host}, beyond this machine: every call needs a token, and "
            "without TLS (CONVEYOR_TLS_CERT_FILE / CONVEYOR_TLS_KEY_FILE) tokens travel in clear text "
            "(docs/security.md)",
            highlight=False,
        )
