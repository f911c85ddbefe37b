"""``conveyor alerts``: firing, pending and recently resolved alerts of a running control plane, and the
rules it evaluates (``conveyor alerts rules``)."""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import urlencode

import typer

from conveyor.cli.client import CaOpt, JsonOpt, UrlOpt, request
from conveyor.cli.output import console, titled_table

app = typer.Typer(
    help="Alerts of the control plane (firing, pending, resolved) and their rules (docs/observability.md).",
    invoke_without_command=True,
)
_STYLE = {"firing": "bold red", "pending": "yellow", "resolved": "green"}


@app.callback()
def alerts(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Every stored alert, also those resolved over an hour ago.")
    ] = False,
    deployment: Annotated[
        str | None, typer.Option("--deployment", "-d", help="Only this deployment's.")
    ] = None,
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Firing and pending alerts, and those resolved in the last hour: state, rule, deployment, severity,
    value and since when."""
    if ctx.invoked_subcommand is not None:
        return
    query = {k: v for k, v in (("all", "true" if show_all else None), ("deployment", deployment)) if v}
    answer = request(url, "GET", "/alerts" + (f"?{urlencode(query)}" if query else ""), as_json=as_json)
    if answer is None:
        return
    found: list[dict[str, Any]] = answer["alerts"]
    if not found:
        console.print("no alerts", highlight=False)
        return
    rows = [
        [
            f"[{_STYLE.get(a['state'], '')}]{a['state']}[/]",
            a["rule"],
            a["deployment"] + (f" v{a['version']}" if a["version"] else ""),
            a["severity"],
            "-" if a["value"] is None else f"{a['value']:.4g}",
            _ago(a["since"]),
        ]
        for a in found
    ]
    columns = ("STATE", "RULE", "DEPLOYMENT", "SEVERITY", "VALUE", "SINCE")
    console.print(titled_table("Alerts", columns, rows, right=("VALUE",)))


@app.command("rules")
def rules(
    deployment: Annotated[str | None, typer.Argument(help="Only this deployment's rules.")] = None,
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The rules the control plane evaluates, per deployment: built-in, from its spec, and AlertRules."""
    path = "/alerts/rules" + (f"?{urlencode({'deployment': deployment})}" if deployment else "")
    answer = request(url, "GET", path, as_json=as_json)
    if answer is None:
        return
    rows = [
        [
            r["deployment"],
            r["name"],
            f"{r['expr']} {r['op']} {r['threshold']:g}",
            r["for"],
            r["severity"],
            r["source"],
        ]
        for r in answer["rules"]
    ]
    columns = ("DEPLOYMENT", "RULE", "CONDITION", "FOR", "SEVERITY", "FROM")
    console.print(titled_table("Alert rules", columns, rows))


def _ago(seconds: float) -> str:
    """How long ago a Unix time was: 45s, 12m, 3h, 2d."""
    elapsed = max(0.0, time.time() - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if elapsed >= size:
            return f"{int(elapsed // size)}{unit} ago"
    return f"{int(elapsed)}s ago"
