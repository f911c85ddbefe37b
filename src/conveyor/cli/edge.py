"""``conveyor edge run`` (an edge node following a deployment) and ``conveyor get edges`` (docs/edge.md)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from conveyor.cli.client import CaOpt, JsonOpt, UrlOpt, check_url, request, verify_for
from conveyor.cli.models import key_values
from conveyor.cli.output import console, titled_table
from conveyor.errors import InvalidInput

PROBLEM_WIDTH = 80
app = typer.Typer(
    help="Edge nodes that follow a deployment of a control plane (docs/edge.md).", no_args_is_help=True
)


@app.command("run")
def run(
    control_plane: Annotated[
        str, typer.Option("--control-plane", help="The control plane's URL (its management API).")
    ],
    deployment: Annotated[str, typer.Option(help="The deployment this node follows.")],
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="A file holding the token (role edge) sent to the control plane; default: CONVEYOR_TOKEN, "
            "else the local admin token for a loopback control plane.",
        ),
    ] = None,
    port: Annotated[
        int, typer.Option(help="Local V2 HTTP port (0: any free port).", min=0, max=65535)
    ] = 8080,
    host: Annotated[str, typer.Option(help="Address the local V2 server binds.")] = "127.0.0.1",
    name: Annotated[
        str | None, typer.Option(help="This node's name (a DNS label); default: the host name.")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="A label of this node, KEY=VALUE (several allowed)."),
    ] = None,
    poll_interval: Annotated[
        str, typer.Option(help="How often to ask the control plane what to serve: 500ms, 5s, 1m.")
    ] = "5s",
    max_backoff: Annotated[
        str, typer.Option(help="Longest wait between polls while the control plane is unreachable.")
    ] = "30s",
    keep: Annotated[int, typer.Option(help="Verified versions kept in the local cache.", min=1, max=100)] = 3,
    ca: CaOpt = None,
    public: Annotated[
        bool,
        typer.Option(
            "--public",
            help="Serve beyond loopback (--host 0.0.0.0, ...): anyone who reaches the port "
            "may call the model.",
        ),
    ] = False,
) -> None:
    """Serve a deployment's model on this node and follow it: poll the control plane, download each new
    version (resumable), verify its digest (and signature under the signing policy), swap it in without a
    failed request, keep the last good versions to serve through outages and restarts. Until Ctrl-C."""
    from conveyor import __version__
    from conveyor.edge.agent.agent import AgentOptions, EdgeAgent
    from conveyor.edge.agent.cache import EdgeCache
    from conveyor.edge.agent.poller import ControlPlaneLink
    from conveyor.observe.logs import configure_logging
    from conveyor.ports import check_ports_free
    from conveyor.registry.edges import check_edge
    from conveyor.security.credentials import client_token, is_loopback_host
    from conveyor.settings import get_settings
    from conveyor.targets.edge_node import EdgeServing, serve_edge

    url = check_url(control_plane)
    node = name or _host_name()
    labels = key_values(label or [], "--label {}: use KEY=VALUE")
    check_edge(node, deployment, labels)
    if not public and not is_loopback_host(host):
        raise InvalidInput(
            f"refusing to serve on {host} without --public: the edge server asks no token, so anyone who "
            "reaches it could call the model"
        )
    interval_s = _duration(poll_interval, "--poll-interval")
    backoff_s = _duration(max_backoff, "--max-backoff")
    settings = get_settings()
    token = read_token(token_file) if token_file is not None else client_token(settings, url)
    configure_logging(settings, component="edge", instance=node)
    check_ports_free(host, {"--port": port})
    options = AgentOptions(
        node,
        deployment,
        labels,
        interval_s=interval_s,
        max_backoff_s=backoff_s,
        require_signed=settings.require_signed_models,
        trusted_dir=settings.effective_trusted_keys_dir,
        agent_version=__version__,
    )
    serving = EdgeServing(settings)
    cache = EdgeCache(settings.home / "edge" / deployment, keep=keep)
    agent: EdgeAgent | None = None

    async def startup() -> None:
        nonlocal agent
        link = ControlPlaneLink(url, token, verify=verify_for(url, ca))
        agent = EdgeAgent(options, link, cache, serving)
        await agent.start_from_cache()
        if agent.serving_entry is not None:
            console.print(f"Serving {agent.serving_entry.label} from the cache", highlight=False)
        agent.start()

    async def shutdown() -> None:
        if agent is not None:
            await agent.stop()

    def on_ready(local: str) -> None:
        if agent is not None:
            agent.address_known(local)
        console.print(
            f"Edge node [bold]{node}[/] following [bold]{deployment}[/] at {url}; V2 on [bold]{local}[/] "
            "(Ctrl-C to stop)",
            highlight=False,
        )

    serve_edge(serving, startup=startup, shutdown=shutdown, host=host, port=port, on_ready=on_ready)


def get_edges(url: UrlOpt = None, ca: CaOpt = None, as_json: JsonOpt = False) -> None:
    """Edge nodes: the version each serves and should serve, whether it is behind and for how long, when it
    was last heard from, its health and requests, and why it refused a version."""
    answer = request(url, "GET", "/edges", as_json=as_json)
    if answer is None:
        return
    if not answer["edges"]:
        console.print("No edge nodes. Start one: conveyor edge run --control-plane URL --deployment NAME")
        return
    rows = [_edge_row(e) for e in answer["edges"]]
    columns = (
        "name",
        "deployment",
        "version",
        "desired",
        "status",
        "lag",
        "last seen",
        "health",
        "requests",
        "problem",
    )
    console.print(titled_table("Edge nodes", columns, rows))


def _edge_row(e: dict[str, Any]) -> list[str]:
    if e.get("followProblem"):
        status = "not following"
    elif e.get("behind"):
        status = "[yellow]behind[/]"
    else:
        status = "current"
    lag = e.get("lagSeconds")
    problem = e.get("followProblem") or e.get("problem") or "-"
    if len(problem) > PROBLEM_WIDTH:  # the whole of it: --json
        problem = problem[: PROBLEM_WIDTH - 1] + "…"
    return [
        e["name"],
        e["deployment"],
        e.get("version") or "-",
        e.get("desired") or "-",
        status,
        "-" if lag is None else _seconds(float(lag)),
        _seconds(float(e["seenSecondsAgo"])) + " ago",
        e["health"],
        f"{e['requests']} ({e['failed']} failed)",
        problem,
    ]


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def read_token(path: Path) -> str:
    """The first non-blank line of ``path``; InvalidInput naming the file when it has none."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InvalidInput(f"--token-file {path}: {exc.strerror or exc}") from None
    token = next((line.strip() for line in lines if line.strip()), None)
    if token is None:
        raise InvalidInput(f"--token-file {path} holds no token")
    return token


def _duration(text: str, option: str) -> float:
    from conveyor.spec.units import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise InvalidInput(f"{option}: {exc}") from None
    if seconds <= 0:
        raise InvalidInput(f"{option} must be above zero, got {text!r}")
    return seconds


def _host_name() -> str:
    """The host name as a DNS label (lowercase, dots and other characters as '-')."""
    cleaned = "".join(c if c.isalnum() else "-" for c in socket.gethostname().lower()).strip("-")
    return cleaned[:63].strip("-") or "edge"
