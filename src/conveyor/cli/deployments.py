"""``conveyor apply / diff / scale / rollback / history / delete``: change deployments through the management
API of a running control plane (``conveyor up``)."""

from __future__ import annotations

import difflib
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.client import CaOpt, JsonOpt, NameArg, UrlOpt, api_client, request
from conveyor.cli.output import console, human_time, print_json, titled_table

if TYPE_CHECKING:
    from conveyor.spec import Resource

FileOpt = Annotated[
    str,
    typer.Option(
        "--filename",
        "-f",
        help="YAML file of Deployment and AlertRule resources (several documents allowed); - reads stdin.",
    ),
]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Return once the deployments serve the new revision: replicas ready, old ones gone, routed by "
        "every gateway.",
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option(help="With --wait: give up after this many seconds (exit 9).", min=1)
]


def _wait(url: str | None, names: list[str], timeout: float, *, quiet: bool) -> None:
    from conveyor.cli.waiting import wait_rolled_out

    with api_client(url) as api:
        wait_rolled_out(api, names, timeout, quiet=quiet)


delete_app = typer.Typer(help="Delete a resource from the control plane.", no_args_is_help=True)


def apply(
    filename: FileOpt,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show what would change; change nothing.")
    ] = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 300.0,
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create or update the deployments in a YAML file (a new revision only where something changed).

    The file is checked here first (errors as FILE:LINE: field: message), then every document is validated
    and its model reference (NAME:VERSION or NAME@ALIAS) resolved by the control plane before any is applied.
    With --wait it returns once the new revisions serve (exit 9 on timeout, 6 if one cannot run).
    """
    resources = _load(filename)
    body = {"documents": [r.to_dict() for r in resources], "dryRun": dry_run}
    answer = request(url, "POST", "/apply", body, as_json=as_json)
    for r in answer["results"] if answer is not None else []:
        note = " (dry run)" if dry_run else ""
        if r["kind"] == "AlertRule":  # no revisions: stored as given
            verb = "unchanged" if not r["changed"] else "created" if r["created"] else "configured"
            console.print(f"alertrule/{r['name']} {verb}{note}", highlight=False)
            continue
        verb = "unchanged" if not r["changed"] else "created" if r["revision"] == 1 else "configured"
        console.print(
            f"{r['kind'].lower()}/{r['name']} {verb} (revision {r['revision']}: {r['model']}){note}",
            highlight=False,
        )
        if r.get("warning"):  # resources.gpu with fallback: cpu on a machine without the GPU (docs/gpu.md)
            console.print(f"[yellow]warning:[/] {r['warning']}", highlight=False)
    if wait and not dry_run:
        names = [r.metadata.name for r in resources if r.kind_name == "Deployment"]
        _wait(url, names, timeout, quiet=as_json)


def diff(filename: FileOpt, url: UrlOpt = None, ca: CaOpt = None, as_json: JsonOpt = False) -> None:
    """Show what `conveyor apply -f FILE` would change: a unified diff of the canonical specs, and the model
    reference resolved to a version as apply resolves it, so an alias moved since the last apply shows as
    "model: iris@production (iris:1 → iris:2)".

    Exit status 0: apply would change nothing; 1: it would make a new revision (like kubectl diff); other
    codes are errors. A new deployment shows as all added. --json prints, per deployment, both specs, both
    references and their resolved versions and artifact digests.
    """
    resources = [r for r in _load(filename) if r.kind_name == "Deployment"]  # AlertRules: not diffed
    source = "stdin" if filename == "-" else filename
    body = {"documents": [r.to_dict() for r in resources]}
    answer = request(url, "POST", "/diff", body)
    assert answer is not None
    differs = bool(answer["differs"])
    if as_json:
        print_json(answer)
    else:
        for resource, found in zip(resources, answer["deployments"], strict=True):
            differs = _print_diff(resource, found, source) or differs
    if differs:
        raise typer.Exit(1)


def _print_diff(resource: Resource, found: dict[str, Any], source: str) -> bool:
    """Print one deployment's spec diff and, when the resolved version changes, its model line; True if
    anything was printed."""
    from conveyor.spec import dump_yaml

    name = resource.metadata.name
    live = _canonical_yaml(found["live_spec"]) if found["live_spec"] is not None else ""
    lines = list(
        difflib.unified_diff(
            live.splitlines(keepends=True),
            dump_yaml([resource]).splitlines(keepends=True),
            fromfile=f"deployment/{name} (live)",
            tofile=f"deployment/{name} ({source})",
        )
    )
    for line in lines:
        style = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1], "")
        text = escape(line.rstrip("\n"))
        console.print(f"[{style}]{text}[/]" if style else text, highlight=False, soft_wrap=True)
    if found["model_changed"]:
        console.print(f"deployment/{name}: {model_change(found)}", highlight=False, soft_wrap=True)
    return bool(lines) or bool(found["model_changed"])


def model_change(found: dict[str, Any]) -> str:
    """``model: iris@production (iris:1 → iris:2)``; the reference's change too when it changed."""
    ref, live_ref = found["ref"], found["live_ref"]
    before = found["live_model"] or ("not deployed" if not found["exists"] else "version not recorded")
    refs = ref if live_ref in (None, ref) else f"{live_ref} → {ref}"
    return f"model: {refs} ({before} → {found['model']})"


def scale(
    name: NameArg,
    replicas: Annotated[int, typer.Option("--replicas", "-r", help="The new fixed replica count (>= 0).")],
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a deployment's replica count (a new revision; refused for an autoscaled deployment)."""
    result = request(url, "POST", f"/deployments/{name}/scale", {"replicas": replicas}, as_json=as_json)
    if result is None:
        return
    if result["changed"]:
        console.print(
            f"deployment/{name} scaled to {replicas} (revision {result['revision']})", highlight=False
        )
    else:
        console.print(f"deployment/{name} unchanged: already {replicas} (revision {result['revision']})")


def rollback(
    name: NameArg,
    to_revision: Annotated[
        int | None,
        typer.Option("--to-revision", help="Revision to return to (default: the one before current)."),
    ] = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 300.0,
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Return a deployment to an earlier revision's spec and model version, as a new revision.

    When that spec names its model by an alias that has moved since (NAME@ALIAS, or NAME for the production
    alias), a note says what the next `conveyor apply -f` of a file naming it will roll out, and how to move
    the alias back; --json gives it as next_apply.
    """
    body = {"toRevision": to_revision} if to_revision is not None else None
    result = request(url, "POST", f"/deployments/{name}/rollback", body, as_json=as_json)
    if result is None:
        pass
    elif result["changed"]:
        target = f"revision {to_revision}" if to_revision is not None else "the previous revision"
        console.print(
            f"deployment/{name} rolled back to {target} (now revision {result['revision']}: "
            f"{result['model']})",
            highlight=False,
        )
    else:
        console.print(
            f"deployment/{name} unchanged: that revision is what runs (revision {result['revision']}: "
            f"{result['model']})",
            highlight=False,
        )
    if result is not None and result["next_apply"] is not None:
        console.print(next_apply_note(result["model"], result["next_apply"]), highlight=False, soft_wrap=True)
    if wait:
        _wait(url, [name], timeout, quiet=as_json)


def next_apply_note(running: str, next_apply: dict[str, Any]) -> str:
    """The rollback note: the deployment runs ``running``, but its model reference now resolves elsewhere."""
    ref, model = next_apply["ref"], next_apply["model"]
    if model is None:
        return (
            f"note: {ref} no longer resolves to a version; the next `conveyor apply -f` of a file naming "
            f"{ref} fails until it does"
        )
    model_name, _, alias = ref.partition("@")
    version, new_version = running.rpartition(":")[2], model.rpartition(":")[2]
    way = "forward" if int(new_version) > int(version) else "back"
    return (
        f"note: {ref} now points at {model}; the next `conveyor apply -f` of a file naming {ref} rolls "
        f"{way} to {model} — move the alias back with "
        f"`conveyor models alias {model_name} {version} {alias or 'production'}`"
    )


def history(
    name: NameArg,
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a deployment's revisions, oldest first: model version, replicas and why each was made."""
    answer = request(url, "GET", f"/deployments/{name}/revisions", as_json=as_json)
    if answer is not None:
        console.print(revisions_table(name, answer["revisions"]))


@delete_app.command("deployment")
def delete_deployment(
    name: NameArg,
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a deployment with its revisions; its replicas drain and stop."""
    if request(url, "DELETE", f"/deployments/{name}", as_json=as_json) is not None:
        console.print(f"deployment/{name} deleted", highlight=False)


def revisions_table(name: str, revisions: list[dict[str, Any]]) -> Table:
    rows = []
    for r in revisions:
        spec = r["spec"].get("spec", {})
        scaling = spec.get("autoscaling")
        replicas = (
            f"auto {scaling['minReplicas']}..{scaling['maxReplicas']}" if scaling else spec.get("replicas")
        )
        rows.append(
            [
                str(r["revision"]),
                r.get("model") or spec.get("model", "-"),
                str(replicas),
                r["change_cause"],
                r.get("created_by") or "-",
                human_time(r["created_at"]),
            ]
        )
    columns = ("revision", "model", "replicas", "change cause", "by", "created")
    return titled_table(f"deployment/{name}: revisions", columns, rows)


def _load(filename: str) -> list[Resource]:
    from conveyor.spec import load_documents, load_file

    if filename == "-":
        return load_documents(sys.stdin.read(), source="<stdin>")
    return load_file(filename)


def _canonical_yaml(spec: dict[str, Any]) -> str:
    """The live spec as ``dump_yaml`` writes a file's, so only real differences show."""
    from pydantic import ValidationError

    from conveyor.spec import Deployment, dump_yaml

    try:
        return dump_yaml([Deployment.model_validate(spec)])
    except ValidationError:  # stored by an older Conveyor: show it as it is
        import yaml

        return str(yaml.safe_dump(spec, sort_keys=False, explicit_start=True))
