"""``conveyor export prometheus|grafana``: a deployment's alert rules as Prometheus alerting rules, and a
Grafana dashboard, from a running control plane (docs/observability.md, Alerts)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import typer

from conveyor.cli import export_edge, export_k8s
from conveyor.cli.client import CaOpt, UrlOpt, request
from conveyor.cli.output import err_console

app = typer.Typer(help="Export alert rules and dashboards for Prometheus and Grafana.", no_args_is_help=True)
OutOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")]
app.command("edge")(export_edge.edge)


@app.command("prometheus")
def prometheus(
    deployment: Annotated[str, typer.Argument(help="The deployment whose rules to export.")],
    output: OutOpt = None,
    url: UrlOpt = None,
    ca: CaOpt = None,
) -> None:
    """The deployment's alert rules (built-in, its spec's, matching AlertRules) as a Prometheus alerting
    rules file: PromQL over Conveyor's metric names, with the same for, labels and annotations. Check it
    with `promtool check rules FILE`."""
    from conveyor.observe.export_prometheus import rules_yaml

    answer = request(url, "GET", f"/export/prometheus/{quote(deployment, safe='')}")
    assert answer is not None
    _write(rules_yaml(answer), output)


@app.command("grafana")
def grafana(
    deployment: Annotated[
        str | None, typer.Argument(help="Preselect this deployment (default: all).")
    ] = None,
    output: OutOpt = None,
    url: UrlOpt = None,
    ca: CaOpt = None,
) -> None:
    """A Grafana dashboard (JSON) of request rate, error rate, p50/p99 latency per version, queue depth,
    replicas and drift; Grafana asks for its Prometheus data source (${DS_PROMETHEUS}) on import."""
    path = "/export/grafana" + (f"?{urlencode({'deployment': deployment})}" if deployment else "")
    answer: Any = request(url, "GET", path)
    _write(json.dumps(answer, indent=2) + "\n", output)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    err_console.print(f"wrote {output}", highlight=False)


app.command("k8s")(export_k8s.k8s)
app.command("kserve")(export_k8s.kserve)
