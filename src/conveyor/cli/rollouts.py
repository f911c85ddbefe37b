"""``conveyor rollout``: start, watch and steer a deployment's progressive rollout (docs/rollouts.md) through
the management API: its plan and step, the traffic each version gets, live numbers per version, the last
check's verdict and the rollout's events."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import typer
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from conveyor.cli.client import ApiClient, CaOpt, JsonOpt, NameArg, UrlOpt, api_client, request
from conveyor.cli.output import console, human_time, print_json, titled_table
from conveyor.errors import Unavailable

app = typer.Typer(
    help="Progressive delivery of a new model version (docs/rollouts.md): start a rollout, watch its steps "
    "and checks, pause, resume, approve, abort (roll back) or promote it.",
    no_args_is_help=True,
)

Strategy = Literal["canary", "blueGreen", "shadow", "abTest"]
WATCH_EVERY_S = 1.0
WATCH_OUTAGE_S = 60.0
"""How long `status --watch` keeps asking a control plane that does not answer (a restart) before it
gives up."""
EVENTS_SHOWN = 8
_PHASE_STYLE = {
    "progressing": "cyan",
    "paused": "yellow",
    "waiting": "yellow",
    "promoted": "bold green",
    "rolled_back": "bold red",
    "superseded": "dim",
}
_CHECK_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "skipped": "dim"}


# -- commands ---------------------------------------------------------------------------------------------


@app.command("start")
def start(
    name: NameArg,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="MODEL:VERSION",
            help="The candidate: a registered version (MODEL:VERSION, or MODEL@ALIAS).",
        ),
    ],
    strategy: Annotated[
        Strategy | None,
        typer.Option(
            help="How the candidate takes traffic (default: the deployment's spec.rollout.strategy, else "
            "canary).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Give traffic to a version tagged validated=false (it may otherwise only be shadowed); "
            "audited.",
        ),
    ] = False,
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a rollout of a running deployment to another model version.

    The deployment gets a new revision running --to beside the current one (the stable), and the control
    plane moves traffic to it step by step as spec.rollout says (or canary with its defaults), checking the
    candidate at every interval: it is promoted after the last step, or rolled back when checks fail.
    Changing the model in the file and running `conveyor apply -f` starts one too.
    """
    body: dict[str, Any] = {"to": to, "force": force}
    if strategy is not None:
        body["strategy"] = strategy
    answer = request(url, "POST", f"/deployments/{name}/rollout", body, as_json=as_json)
    if answer is not None:
        console.print(started_line(name, answer["revision"], answer["rollout"]), highlight=False)


@app.command("status")
def status(
    name: NameArg,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Redraw every second until the rollout ends; exit 0 if promoted, 1 if rolled back or "
            "superseded. Ctrl-C stops watching (exit 0), not the rollout.",
        ),
    ] = False,
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a deployment's rollout (the one in progress, else the latest).

    Strategy, phase, the plan's steps with the current one marked, the traffic each version gets, per
    version its requests/s, error rate, p99 latency and agreement over the last window, the last check's
    verdict (each check with the candidate's and the stable's value and its bound) and the latest events.
    With --json the API's answer (with --watch: the final one, once the rollout ended).
    """
    path = f"/deployments/{name}/rollout"
    with api_client(url) as api:
        answer = api.get(path)
        if watch:
            try:
                answer = _watch(api, name, answer, quiet=as_json)
            except KeyboardInterrupt:
                raise typer.Exit(0) from None
    if as_json:
        print_json(answer)
    elif not watch:
        console.print(status_view(answer))
    if watch:
        rollout = answer["rollout"]
        if not as_json:
            console.print(ended_line(rollout), highlight=False)
        raise typer.Exit(0 if rollout["phase"] == "promoted" else 1)


def _action(action: str, done: str) -> Any:
    def command(name: NameArg, url: UrlOpt = None, ca: CaOpt = None, as_json: JsonOpt = False) -> None:
        answer = request(url, "POST", f"/deployments/{name}/rollout/{action}", as_json=as_json)
        if answer is not None:
            console.print(action_line(action, name, answer["rollout"]), highlight=False)

    command.__doc__ = done
    command.__name__ = action
    return command


app.command("pause")(
    _action(
        "pause",
        "Pause the rollout in progress: no more checks or steps; the traffic stays split as it is.",
    )
)
app.command("resume")(_action("resume", "Resume a paused rollout: its checks start again."))
app.command("approve")(
    _action(
        "approve",
        "Let a rollout that waits for approval go on: into the step behind a manual gate, or to promotion "
        "(spec.rollout.promotion.manual).",
    )
)
app.command("abort")(
    _action(
        "abort",
        "Roll the rollout back now: all traffic to the stable version, a new revision equal to the stable "
        "one, the candidate's replicas drain. Audited.",
    )
)
app.command("promote")(
    _action(
        "promote",
        "Promote the candidate now, skipping the remaining steps and checks: it takes all traffic and the "
        "stable's replicas drain. Audited.",
    )
)


@app.command("history")
def history(
    name: NameArg,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.", min=1, max=1000)] = 20,
    url: UrlOpt = None,
    ca: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a deployment's rollouts, newest first: strategy, stable and candidate, how each ended and why."""
    answer = request(url, "GET", f"/deployments/{name}/rollouts?limit={limit}", as_json=as_json)
    if answer is None:
        return
    if not answer["rollouts"]:
        console.print(f"deployment/{name} has had no rollout", highlight=False)
        return
    console.print(history_table(name, answer["rollouts"]))


def _watch(api: ApiClient, name: str, answer: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Poll until the watched rollout ends, redrawn live on a terminal (nothing shown when ``quiet``); its
    last answer."""
    if quiet or not console.is_terminal:  # a pipe or a file: no redrawing, the final state once
        answer = _follow(api, name, answer, lambda shown: None)
        if not quiet:
            console.print(status_view(answer))
        return answer
    from rich.live import Live

    with Live(status_view(answer), console=console, auto_refresh=False) as live:
        return _follow(api, name, answer, lambda shown: live.update(shown, refresh=True))


def _follow(
    api: ApiClient, name: str, answer: dict[str, Any], show: Callable[[RenderableType], None]
) -> dict[str, Any]:
    """Ask every second until the rollout of ``answer`` ends; a newer rollout that superseded it ends the
    watch with the old one's record from the history. A control plane that does not answer (a restart: the
    rollout goes on after it) is asked again for ``WATCH_OUTAGE_S``."""
    number = answer["rollout"]["number"]
    outage: float | None = None
    while answer["rollout"]["active"]:
        time.sleep(WATCH_EVERY_S)
        try:
            fresh = api.get(f"/deployments/{name}/rollout")
        except Unavailable as exc:
            outage = outage or time.monotonic()
            if time.monotonic() - outage > WATCH_OUTAGE_S:
                raise
            show(Group(status_view(answer), Text(f"{exc.message} (asking again)", style="yellow")))
            continue
        outage = None
        if fresh["rollout"]["number"] != number:
            rows = api.get(f"/deployments/{name}/rollouts?limit=1000")["rollouts"]
            ours = next((r for r in rows if r["number"] == number), fresh["rollout"])
            answer = {**answer, "rollout": ours}
        else:
            answer = fresh
        show(status_view(answer))
    return answer


# -- rendering (pure: an API answer in, Rich renderables or text out) ------------------------------------


def started_line(name: str, revision: int, rollout: dict[str, Any]) -> str:
    forced = " (forced: the validation gate skipped, audited)" if rollout.get("forced") else ""
    return (
        f"rollout {rollout['number']} of deployment/{name} started: {rollout['strategy']}, "
        f"{rollout['stableModel']} → {rollout['candidateModel']} (revision {revision}){forced}; "
        f"watch it: conveyor rollout status {name} --watch"
    )


def action_line(action: str, name: str, rollout: dict[str, Any]) -> str:
    """What a pause, resume, approve, abort or promote did, from the rollout record it answered with."""
    head = f"rollout {rollout['number']} of deployment/{name}"
    candidate, stable = rollout["candidateModel"], rollout["stableModel"]
    phase = rollout["phase"]
    if phase == "promoted":
        how = "skipping the analysis" if action == "promote" else rollout.get("reason") or "approved"
        return f"{head} promoted: {candidate} takes all traffic ({how})"
    if phase == "rolled_back":
        why = rollout.get("reason") or "aborted"
        return f"{head} rolled back: all traffic to {stable}, {candidate}'s replicas drain ({why})"
    traffic = f"{rollout['weight']:g}% of requests to {candidate}"
    if action == "pause" or phase == "paused":
        step = rollout["step"] + 1
        return f"{head} paused at step {step} ({traffic}): resume with `conveyor rollout resume {name}`"
    if action == "approve":
        return f"{head} approved: step {rollout['step'] + 1} ({traffic})"
    return f"{head} {phase}: step {rollout['step'] + 1} ({traffic})"


def ended_line(rollout: dict[str, Any]) -> str:
    """The last line of `status --watch`: how the rollout ended."""
    what = {"promoted": "promoted", "rolled_back": "rolled back", "superseded": "superseded"}
    verb = what.get(rollout["phase"], rollout["phase"])
    why = f": {rollout['reason']}" if rollout.get("reason") else ""
    return f"rollout {rollout['number']} of deployment/{rollout['deployment']} {verb}{why}"


def summary_line(name: str, brief: dict[str, Any]) -> str:
    """The line `describe deployment` shows for the ``rollout`` of GET /deployments/{name} (``{number,
    strategy, phase, stableModel, candidateModel, step, ...}``, present while one is active)."""
    step = f" at step {brief['step'] + 1}" if brief.get("step") is not None else ""
    return (
        f"{brief['number']} ({brief['strategy']}) to {brief['candidateModel']}: {brief['phase']}{step}; "
        f"conveyor rollout status {name}"
    )


def status_view(answer: dict[str, Any]) -> Group:
    """The whole `rollout status` screen of a GET /deployments/{name}/rollout answer."""
    rollout, state, plan = answer["rollout"], answer["state"], answer["plan"]
    parts: list[RenderableType] = [_heading(rollout), _progress(rollout, state, plan)]
    parts.append(Text(f"traffic  {traffic_text(rollout, state)}", overflow="fold"))
    if rollout["active"]:  # an ended one says why it ended instead
        parts.append(Text(f"checks   {_counts(rollout, plan)}"))
    if note := _note(rollout, state):
        parts.append(note)
    parts.append(versions_table(answer))
    verdict = answer.get("lastVerdict")
    if verdict is not None:
        parts.append(checks_table(verdict))
    events = answer.get("events") or []
    if events:
        parts.append(events_table(events[-EVENTS_SHOWN:]))
    return Group(*parts)


def _heading(rollout: dict[str, Any]) -> Text:
    phase = rollout["phase"]
    text = Text.assemble(
        (f"deployment/{rollout['deployment']}", "bold"),
        f"  rollout {rollout['number']} ({rollout['strategy']})  ",
        f"{rollout['stableModel']} → {rollout['candidateModel']}  ",
        (phase.replace("_", " "), _PHASE_STYLE.get(phase, "")),
    )
    if rollout.get("forced"):
        text.append("  forced", style="yellow")
    return text


def step_label(step: dict[str, Any]) -> str:
    """What a step of the API's ``plan`` is: ``25%``, ``shadow 100%``, ``preview``, ``A/B 10% of users``."""
    from conveyor.control.rollout_plan import Step

    return Step(**step).describe()


def steps_done(rollout: dict[str, Any], plan: list[dict[str, Any]]) -> int:
    """Steps behind the rollout: all of them once promoted."""
    return len(plan) if rollout["phase"] == "promoted" else min(rollout["step"], len(plan))


def _progress(rollout: dict[str, Any], state: dict[str, Any], plan: list[dict[str, Any]]) -> Table:
    """``step 2/4: 25%  ━━━━━━━━━━━━━━━━━━━━  10% › [25%] › 50% (gate) › 100%``: a gate waits for
    approval before its step."""
    done = steps_done(rollout, plan)
    current = min(rollout["step"], len(plan) - 1)
    row = Text()
    for i, step in enumerate(plan):
        if i:
            row.append(" › ", style="dim")
        label = step_label(step) + (" (gate)" if step.get("gate") else "")
        if i < done:
            row.append(label, style="green")
        elif i == current and rollout["active"]:
            row.append(f"[{label}]", style="bold reverse")
        else:
            row.append(label, style="dim")
    ended = rollout["phase"] in ("rolled_back", "superseded")
    bar = ProgressBar(
        total=max(1, len(plan)),
        completed=done,
        width=24,
        complete_style="red" if ended else "green",
        finished_style="green",
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column()
    grid.add_row(
        f"step {current + 1}/{len(plan)}: {state.get('describe') or step_label(plan[current])}", bar, row
    )
    return grid


def traffic_text(rollout: dict[str, Any], state: dict[str, Any]) -> str:
    """Who answers the deployment's requests now (requests that name no version)."""
    stable, candidate = rollout["stableModel"], rollout["candidateModel"]
    weight = float(state.get("weight", rollout["weight"]) or 0.0)
    mirror = float(state.get("mirror") or 0.0)
    phase = rollout["phase"]
    if phase == "promoted":
        return f"{candidate} 100% (promoted)"
    if phase in ("rolled_back", "superseded"):
        return f"{stable} 100% ({phase.replace('_', ' ')})"
    if state.get("routed") is False:  # no split is routed before the candidate has a ready replica
        return f"{stable} 100% ({candidate} gets its share once its replicas are ready)"
    if rollout["strategy"] == "abTest":
        return f"{stable} {100 - weight:g}% of users · {candidate} {weight:g}% of users (sticky per user)"
    if mirror:
        return (
            f"{stable} 100% · {candidate} gets a copy of {mirror:g}% (shadow: its answers never reach "
            "callers)"
        )
    if rollout["strategy"] == "blueGreen" and not weight:
        version = candidate.rpartition(":")[2]
        return f"{stable} 100% · {candidate} 0% (preview: only requests to its version {version})"
    return f"{stable} {100 - weight:g}% · {candidate} {weight:g}%"


def _counts(rollout: dict[str, Any], plan: list[dict[str, Any]]) -> str:
    threshold = (rollout.get("spec") or {}).get("threshold")
    step = plan[min(rollout["step"], len(plan) - 1)] if plan else {}
    passes = step.get("passes", 1)
    failed = f"{rollout['failedChecks']} failed" + (f" (rollback at {threshold})" if threshold else "")
    return f"{rollout['passedChecks']} of {passes} passed in this step · {failed}"


def _note(rollout: dict[str, Any], state: dict[str, Any]) -> Text | None:
    if not rollout["active"]:
        when = human_time(rollout.get("finishedAt"))
        why = f": {rollout['reason']}" if rollout.get("reason") else ""
        return Text(f"ended    {when}{why}", style=_PHASE_STYLE.get(rollout["phase"], ""))
    name = rollout["deployment"]
    if rollout["phase"] == "paused":
        return Text(f"paused   resume with: conveyor rollout resume {name}", style="yellow")
    if state.get("waitingFor"):
        hint = f" (conveyor rollout approve {name})" if rollout["phase"] == "waiting" else ""
        return Text(f"waiting  for {state['waitingFor']}{hint}", style="yellow")
    if state.get("nextCheckInSeconds") is not None:
        return Text(f"next     check in {state['nextCheckInSeconds']:g}s", style="dim")
    return None


def versions_table(answer: dict[str, Any]) -> Table:
    """Per version (stable first): requests/s, error rate, p99, mirrored requests/s and agreement."""
    window = float(answer.get("windowSeconds") or 0.0)
    rollout = answer["rollout"]
    models = {"stable": rollout["stableModel"], "candidate": rollout["candidateModel"]}
    rows = []
    for version, v in sorted(
        answer.get("versions", {}).items(), key=lambda kv: kv[1].get("role") != "stable"
    ):
        role = v.get("role", "")
        mirrored = v.get("shadowRequests")
        rows.append(
            [
                f"{role} {models.get(role) or version}",
                _num(v.get("requestRate"), "{:.3g}"),
                _percent(v.get("errorRate")),
                _num(None if v.get("p99Seconds") is None else v["p99Seconds"] * 1000, "{:.4g}"),
                _num(None if mirrored is None or not window else mirrored / window, "{:.3g}"),
                _percent(v.get("agreement")),
            ]
        )
    columns = ("version", "requests/s", "errors", "p99 ms", "mirrored/s", "agreement")
    title = f"Last {window:g} s per version" if window else "Per version"
    return titled_table(title, columns, rows, right=columns[1:])


def checks_table(verdict: dict[str, Any]) -> Table:
    """The last check: its verdict and summary as the title, then each check."""
    status = verdict.get("status", "?")
    title = f"Last check: [{_CHECK_STYLE.get(status, '')}]{escape(status)}[/]"
    if verdict.get("summary"):
        title += f" — {escape(verdict['summary'])}"
    table = Table(title=title, title_justify="left")
    for column in ("check", "status", "candidate", "stable", "bound"):
        table.add_column(column, justify="right" if column in ("candidate", "stable") else "left")
    for c in verdict.get("checks", []):
        style = _CHECK_STYLE.get(c["status"], "")
        table.add_row(
            Text(c["name"]),
            Text(c["status"], style=style),
            _num(c.get("candidate"), "{:.4g}"),
            _num(c.get("stable"), "{:.4g}"),
            Text(c.get("bound") or ""),
        )
    return table


def events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(title="Events (most recent last)", title_justify="left")
    for column in ("time", "kind", "message"):
        table.add_column(column)
    for e in events:
        table.add_row(_clock(e.get("at")), Text(e.get("kind", "")), Text(e.get("message", "")))
    return table


def history_table(name: str, rollouts: list[dict[str, Any]]) -> Table:
    """Newest first, whatever order the API lists them in."""
    table = Table(title=f"deployment/{name}: rollouts", title_justify="left")
    for column in ("#", "strategy", "stable → candidate", "phase", "started", "ended"):
        table.add_column(column, justify="right" if column == "#" else "left", no_wrap=True)
    table.add_column("reason")  # the one that wraps on a narrow terminal
    for r in sorted(rollouts, key=lambda r: r["number"], reverse=True):
        table.add_row(
            str(r["number"]),
            r["strategy"],
            Text(f"{r['stableModel']} → {r['candidateModel']}"),
            Text(r["phase"].replace("_", " "), style=_PHASE_STYLE.get(r["phase"], "")),
            human_time(r.get("startedAt")),
            human_time(r.get("finishedAt")),
            Text(r.get("reason") or "-"),
        )
    return table


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _percent(share: float | None) -> str:
    """A 0..1 share as a percent: ``0.5%``, ``99.95%``."""
    return "-" if share is None else f"{share * 100:.4g}%"


def _clock(iso: str | None) -> str:
    """An event's time of day (local), to the second: a rollout's steps are seconds apart."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")
