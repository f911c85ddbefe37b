"""``conveyor serve``: serve registered versions (or a model file) over the Open Inference Protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

import conveyor
from conveyor.cli.output import console
from conveyor.settings import get_settings


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
    trust_pickle: Annotated[
        bool, typer.Option("--trust-pickle", help="Allow pickle/joblib model files (unpickling runs code).")
    ] = False,
    sample: Annotated[
        Path | None, typer.Option(help="Sample inputs for a model file that needs one (PyTorch).")
    ] = None,
) -> None:
    """Serve model versions over the V2 REST API until Ctrl-C (then finish in-flight requests and exit)."""
    from conveyor.server import serve as run_server

    settings = get_settings()
    loaded = []
    with console.status("Loading models…", spinner="dots"):
        for ref in refs:
            loaded.append(conveyor.load(ref, settings=settings, trust_pickle=trust_pickle, sample=sample))

    table = Table(title="Serving", title_justify="left")
    for col in ("model", "version", "inference endpoint (POST)"):
        table.add_column(col)

    def on_ready(url: str) -> None:
        for m in loaded:
            path = f"/v2/models/{m.name}" + (f"/versions/{m.version}" if m.version else "")
            table.add_row(m.name, m.version or "-", f"{url}{path}/infer")
        console.print(table)
        console.print(f"Conveyor listening on [bold]{url}[/] (Ctrl-C to stop)", highlight=False)

    run_server([m.session for m in loaded], host=host, port=port, settings=settings, on_ready=on_ready)
