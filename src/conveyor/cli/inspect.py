"""``conveyor get / describe / endpoints``: read the control plane's deployments, models and replicas."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from conveyor.cli.client import CaOpt, JsonOpt, NameArg, UrlOpt, request
from conveyor.cli.deployments import revisions_table
from conveyor.cli.drift import deployment_drift, drift_renderables
from conveyor.cli.edge import get_edges
from conveyor.cli.output import console, human_time, print_json, titled_table
from conveyor.cli.rollouts import summary_line as rollout_summary

get_app = typer.Typer(help="List deployments, models or replicas of the control plane.", no_args_is_help=True)
describe_app = typer.Typer(help="Show one resource in detail.", no_args_is_help=True)


INFER_COLUMN = "inference endpoint (POST)"


def infer_url(endpoint: dict[str, Any]) -> str:
    """The full URL clients POST to, from an entry of GET /endpoints ("-" while no gateway has reported)."""
    return f"{endpoint['url']}/infer" if endpoint.get("url") else "-"


def infer_urls(url: str | None) -> dict[str, str]:
    """Each deployment's full inference URL on a gateway the control plane knows (the API's deployment
    record only has the path); a deployment missing here is shown with its path."""
    answer = request(url, "GET", "/endpoints") or {}
    return {e["name"]: infer_url(e) for e in answer.get("endpoints", []) if e.get("url")}


def _ready(counts: dict[str, int]) -> str:
    return f"{counts.get('ready', 0)}/{counts.get('desired', 0)}"


def _placement(d: dict[str, Any]) -> str:
    """inprocess: in each gateway (no hop, no isolation); process: replica processes (older servers: -)."""
    return str(d.get("placement") or "-")


@get_app.command("deployments")
def get_deployments(url: UrlOpt = None, ca: CaOpt = None, as_json: JsonOpt = False) -> None:
    """Deployments with their current revision, model version and ready/desired replicas."""
    answer = request(url, "GET", "/deployments", as_json=as_json)
    if answer is None:
        return
    if not answer["deployments"]:
        console.print("No deployments. Try: conveyor apply -f deployment.yaml")
        return
    urls = infer_urls(url)
    rows = [
        [
            d["name"],
            str(d["revision"]),
            d.get("model") or "-",
            _placement(d),
            _ready(d["replicas"]) + (" [red](cannot run: see describe)[/]" if d.get("problem") else ""),
            urls.get(d["name"], f"{d['endpoint']}/infer"),
            human_time(d["updated_at"]),
        ]
        for d in answer["deployments"]
    ]
    columns = ("name", "revision", "model", "placement", "ready", INFER_COLUMN, "updated")
    console.print(titled_table("Deployments", columns, rows))


@get_app.command("models")
def get_models(url: UrlOpt = None, ca: CaOpt = None, as_json: JsonOpt = False) -> None:
    """Models in the control plane's registry, with their latest version and aliases."""
    answer = request(url, "GET", "/models", as_json=as_json)
    if answer is None:
        return
    rows = [
        [
            m["name"],
            str(m.get("latest_version") or "-"),
            str(m["version_count"]),
            ", ".join(f"{a}→{v}" for a, v in sorted(m["aliases"].items())) or "-",
            human_time(m["created_at"]),
        ]
        for m in answer["models"]
    ]
    console.print(titled_table("Models", ("name", "latest", "versions", "aliases", "created"), rows))


@get_app.command("replicas")
def get_replicas(url: UrlOpt = None, ca: CaOpt = None, as_json: JsonOpt = False) -> None:
    """Replica processes the control plane runs: state, revision, model version, pid, restarts."""
    answer = request(url, "GET", "/replicas", as_json=as_json)
    if answer is None:
        return
    console.print(replicas_table("Replicas", answer["replicas"]))


@describe_app.command("deployment")
def describe_deployment(
    name: NameArg,
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A deployment: its spec as YAML, revisions, replicas, recent events and input drift per version."""
    d = request(url, "GET", f"/deployments/{name}")
    assert d is not None
    drift = deployment_drift(url, name)
    if as_json:
        print_json(d if drift is None else {**d, "drift": drift})
        return
    import yaml

    console.print(f"[bold]deployment/{d['name']}[/]  revision {d['revision']}  model {d.get('model') or '-'}")
    endpoint = infer_urls(url).get(name, f"{d['endpoint']}/infer")
    console.print(f"  endpoint   {endpoint} (POST)", highlight=False)
    console.print(f"  replicas   {_ready(d['replicas'])} ready ({d['replicas'].get('total', 0)} running)")
    console.print(f"  placement  {_placement(d)}", highlight=False)
    console.print(f"  updated    {human_time(d['updated_at'])}, created by {d.get('created_by') or '-'}")
    if d.get("problem"):
        console.print(f"  [red]cannot run:[/] {d['problem']}", highlight=False)
    if d.get("rollout"):
        console.print(f"  rollout    {rollout_summary(name, d['rollout'])}", highlight=False, markup=False)
    console.print("[bold]Spec:[/]")
    console.print(yaml.safe_dump(d["spec"], sort_keys=False).rstrip(), highlight=False, markup=False)
    console.print(revisions_table(name, d["revisions"]))
    console.print(replicas_table("Replicas", d["instances"]))
    events = [[human_time(e["time"]), e["kind"], e["message"]] for e in d["events"]]
    console.print(titled_table("Events (most recent last)", ("time", "kind", "message"), events))
    for part in drift_renderables(drift):
        console.print(part, highlight=False)


@describe_app.command("model")
def describe_model(
    name: Annotated[str, typer.Argument(help="Model name.")],
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A model of the control plane's registry and its versions."""
    m = request(url, "GET", f"/models/{name}", as_json=as_json)
    if m is None:
        return
    rows = [
        [
            str(v["version"]),
            v["framework"],
            v["sha256"][:12],
            ", ".join(v["aliases"]) or "-",
            human_time(v["created_at"]),
        ]
        for v in m["versions"]
    ]
    console.print(
        titled_table(
            f"model/{name}: versions", ("version", "framework", "sha256", "aliases", "created"), rows
        )
    )


def endpoints(url: UrlOpt = None, ca: CaOpt = None, as_json: JsonOpt = False) -> None:
    """Where to send inference requests: the live gateways and each deployment's URL."""
    answer = request(url, "GET", "/endpoints", as_json=as_json)
    if answer is None:
        return
    gateways = [[g.get("id", "-"), g.get("url") or "-", g.get("grpcUrl") or "-"] for g in answer["gateways"]]
    if gateways:
        console.print(titled_table("Gateways", ("id", "url", "grpc"), gateways))
    else:
        console.print("No gateway has reported yet (is `conveyor up` running?)")
    rows = [
        [
            e["name"],
            e.get("model") or "-",
            e.get("url") or "-",
            _ready(e["replicas"]),
            ", ".join(f"{i['id']} {i['state']}" for i in e["instances"]) or "-",
        ]
        for e in answer["endpoints"]
    ]
    console.print(titled_table("Endpoints", ("name", "model", "url", "ready", "replicas"), rows))


def _provider(replica: dict[str, Any]) -> str:
    """The execution provider that runs the replica's model, and its GPU when pinned to one (docs/gpu.md);
    "-" from a control plane too old to say."""
    provider = str(replica.get("provider") or "-")
    return f"{provider} (GPU {replica['gpu']})" if replica.get("gpu") else provider


def replicas_table(title: str, replicas: list[dict[str, Any]]) -> Table:
    columns = (
        "id",
        "deployment",
        "revision",
        "model",
        "provider",
        "state",
        "pid",
        "restarts",
        "gateways",
        "started",
    )
    rows = [
        [
            r["id"],
            r["deployment"],
            str(r["revision"]),
            f"{r.get('model')}:{r.get('version')}",
            _provider(r),
            r["state"],
            str(r.get("pid") or "-"),
            str(r.get("restarts", 0)),
            str(r.get("gateways", 0)),
            human_time(r.get("started_at")),
        ]
        for r in replicas
    ]
    return titled_table(title, columns, rows)


# `conveyor get edges` lives with the edge commands; it is listed last under `get`.
get_app.command("edges")(get_edges)
