"""``conveyor serve``: serve registered versions (or a model file) over the Open Inference Protocol."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from conveyor.cli.certs import TlsCertOpt, TlsKeyOpt, with_tls
from conveyor.cli.output import console, titled_table
from conveyor.settings import get_settings
from conveyor.spec.units import (
    MAX_BATCH_SIZE,
    MAX_CACHE_ENTRIES,
    MAX_QUEUE_DELAY_MICROSECONDS,
    MAX_QUEUE_SIZE,
    MAX_REQUEST_TIMEOUT_MILLISECONDS,
    parse_duration,
)

_BATCHING = "Batching (per replica)"
_CACHE = "Response cache (per served version)"


def serve(
    refs: Annotated[
        list[str],
        typer.Argument(
            metavar="REF",
            help="What to serve: NAME, NAME:VERSION, NAME@ALIAS, or a model file path. Several allowed.",
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.", min=0, max=65535)] = 8080,
    grpc_port: Annotated[
        int | None, typer.Option(help="Also serve V2 gRPC on this port (0: any free port).", min=0, max=65535)
    ] = None,
    replicas: Annotated[
        int, typer.Option(help="Replicas of every served version, behind one gateway.", min=1)
    ] = 1,
    placement: Annotated[
        str,
        typer.Option(
            help="Where replicas run: inprocess (inside the gateway: fastest), process (one process each: "
            "isolated, restarted on crash), auto (inprocess for 1 replica, else process).",
        ),
    ] = "auto",
    device: Annotated[
        str,
        typer.Option(
            help="What runs the models: cpu, cuda[:N] (ONNX Runtime's CUDA provider; with --replicas, one "
            "GPU per replica in turn unless N is given), tensorrt[:N], or auto (CUDA when there is a GPU, "
            "else cpu). A GPU that is missing is an error (docs/gpu.md).",
        ),
    ] = "cpu",
    max_batch_size: Annotated[
        int | None,
        typer.Option(
            help="Most requests merged into one model call; 1: off.",
            min=1,
            max=MAX_BATCH_SIZE,
            rich_help_panel=_BATCHING,
        ),
    ] = None,
    max_queue_delay_us: Annotated[
        int | None,
        typer.Option(
            help="Longest wait for a batch to fill (µs).",
            min=0,
            max=MAX_QUEUE_DELAY_MICROSECONDS,
            rich_help_panel=_BATCHING,
        ),
    ] = None,
    max_queue_size: Annotated[
        int | None,
        typer.Option(
            help="Requests waiting per version before 429.",
            min=1,
            max=MAX_QUEUE_SIZE,
            rich_help_panel=_BATCHING,
        ),
    ] = None,
    request_timeout_ms: Annotated[
        int | None,
        typer.Option(
            help="Unanswered after this long: 504.",
            min=1,
            max=MAX_REQUEST_TIMEOUT_MILLISECONDS,
            rich_help_panel=_BATCHING,
        ),
    ] = None,
    cache_size: Annotated[
        int,
        typer.Option(
            help="Answers to keep per version: a repeated identical request is answered without running the "
            "model (docs/serving.md, Response cache); 0: no cache. Bytes: CONVEYOR_CACHE_MAX_BYTES (64 MiB).",
            min=0,
            max=MAX_CACHE_ENTRIES,
            rich_help_panel=_CACHE,
        ),
    ] = 0,
    cache_ttl: Annotated[
        str,
        typer.Option(help="How long a cached answer is served: 500ms, 30s, 5m, 1h.", rich_help_panel=_CACHE),
    ] = "60s",
    trust_pickle: Annotated[
        bool, typer.Option("--trust-pickle", help="Allow pickle/joblib model files (unpickling runs code).")
    ] = False,
    sample: Annotated[
        Path | None, typer.Option(help="Sample inputs for a model file that needs one (PyTorch).")
    ] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="Callers must send one of the tokens in this file (one per line) as Authorization: Bearer.",
        ),
    ] = None,
    public: Annotated[
        bool,
        typer.Option(
            "--public",
            help="Serve beyond loopback (--host 0.0.0.0, ...) with no token: anyone who reaches the port may "
            "call the models.",
        ),
    ] = False,
) -> None:
    """Serve model versions over V2 REST (and gRPC) until Ctrl-C, then finish in-flight requests and exit.

    Open on loopback (the default --host); beyond it, give --token-file or say --public.
    """
    from conveyor.errors import InvalidInput
    from conveyor.gateway.auth import GatewayAuth
    from conveyor.security.credentials import is_loopback_host
    from conveyor.security.token_file import FileTokens
    from conveyor.targets.serve_stack import Served, serve_local

    if token_file is not None and public:
        raise InvalidInput("--token-file and --public contradict each other: pick one")
    if token_file is None and not public and not is_loopback_host(host):
        raise InvalidInput(
            f"refusing to serve on {host} without authentication: anyone who reaches it could call the "
            "models; give --token-file FILE (bearer tokens, one per line) or --public"
        )
    auth = GatewayAuth(FileTokens(token_file)) if token_file is not None else None

    if placement not in ("auto", "inprocess", "process"):
        raise InvalidInput(f"--placement must be auto, inprocess or process, got {placement!r}")
    try:
        ttl_s = parse_duration(cache_ttl)
    except ValueError as e:
        raise InvalidInput(f"--cache-ttl: {e}") from None
    if ttl_s <= 0:
        raise InvalidInput(f"--cache-ttl must be above zero, got {cache_ttl!r}")
    overrides: dict[str, Any] = {
        k: v
        for k, v in (
            ("max_batch_size", max_batch_size),
            ("max_queue_delay_us", max_queue_delay_us),
            ("max_queue_size", max_queue_size),
            ("request_timeout_ms", request_timeout_ms),
            ("cache_max_entries", cache_size or None),
            ("cache_ttl_s", ttl_s if cache_size else None),
        )
        if v is not None
    }
    overrides.update(_device_settings(device, overrides))
    settings, tls = with_tls(get_settings().model_copy(update=overrides), tls_cert, tls_key)
    from conveyor.observe.logs import configure_logging

    configure_logging(settings, component="serve", instance=str(port or os.getpid()))  # one writer per file
    from conveyor.observe import otlp

    otlp.start(settings, "serve", str(port or os.getpid()))  # spans of sampled requests, when configured
    served: list[Served] = []
    status = console.status("Loading models…", spinner="dots")
    status.start()

    def on_loaded(models: list[Served]) -> None:
        served.extend(models)
        status.update(f"Starting {replicas} replica(s)…" if replicas > 1 else "Starting…")

    def on_ready(url: str) -> None:
        status.stop()
        rows = [
            [
                m.name,
                m.version or "-",
                f"{url}/v2/models/{m.name}" + (f"/versions/{m.version}" if m.version else "") + "/infer",
            ]
            for m in served
        ]
        table = titled_table("Serving", ("model", "version", "inference endpoint (POST)"), rows)
        console.print(table)
        if settings.device != "cpu":
            console.print(f"Models run on [bold]{settings.device}[/] (docs/gpu.md)", highlight=False)
        console.print(f"Conveyor listening on [bold]{url}[/] (Ctrl-C to stop)", highlight=False)

    def on_grpc_ready(address: str) -> None:
        console.print(f"V2 gRPC on [bold]{address}[/]", highlight=False)

    from conveyor.ports import check_ports_free

    check_ports_free(host, {"--port": port, "--grpc-port": grpc_port})
    try:
        serve_local(
            refs,
            settings,
            replicas=replicas,
            placement=placement,  # type: ignore[arg-type]
            host=host,
            port=port,
            grpc_port=grpc_port,
            trust_pickle=trust_pickle,
            sample=sample,
            on_loaded=on_loaded,
            on_ready=on_ready,
            on_grpc_ready=on_grpc_ready,
            tls=tls,
            auth=auth,
        )
    finally:
        status.stop()


def _device_settings(device: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings ``--device`` changes: the device, resolved here (so a missing GPU is one line before
    anything starts: runtime/providers.py), and on a GPU the batching defaults the user did not set."""
    from conveyor.runtime.providers import choose, gpu_batching, parse_device, probe_capabilities

    asked = parse_device(device)
    if asked.kind == "cpu":
        return {}
    choice = choose(asked, probe_capabilities(), what=f"--device {device}")
    if not choice.is_gpu:  # auto on a machine without a GPU
        return {"device": "cpu"}
    explicit = {*overrides, *get_settings().model_fields_set}
    return {"device": str(choice.device), **gpu_batching(explicit)}
