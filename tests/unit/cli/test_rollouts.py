"""`conveyor rollout status / history / pause ...`, `describe deployment` and `apply --wait` as they render a
rollout: pure functions fed with answers shaped as GET /deployments/{name}/rollout gives them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rich.console import Console, RenderableType

from conveyor.cli import rollouts as cli
from conveyor.cli.waiting import done_line, rolled_out
from conveyor.errors import Unavailable

CANARY_SPEC = {"strategy": "canary", "steps": [5.0, 25.0, 50.0, 100.0], "threshold": 2, "manualGates": [50.0]}


def canary_step(weight: float, gate: bool = False) -> dict[str, Any]:
    return {"kind": "canary", "weight": weight, "mirror": 0.0, "passes": 1, "gate": gate}


def answer(**rollout: Any) -> dict[str, Any]:
    """A canary from iris:1 to iris:2 in its second step (25%), one failed check behind it."""
    record = {
        "id": 7,
        "deployment": "iris",
        "number": 3,
        "strategy": "canary",
        "phase": "progressing",
        "stableRevision": 4,
        "candidateRevision": 5,
        "stableModel": "iris:1",
        "candidateModel": "iris:2",
        "step": 1,
        "weight": 25.0,
        "failedChecks": 1,
        "passedChecks": 0,
        "spec": CANARY_SPEC,
        "startedAt": "2026-12-01T16:00:00+00:00",
        "stepStartedAt": "2026-12-01T16:00:31+00:00",
        "updatedAt": "2026-12-01T16:01:01+00:00",
        "finishedAt": None,
        "startedBy": "admin",
        "reason": None,
        "forced": False,
        "active": True,
    }
    record.update(rollout)
    return {
        "rollout": record,
        "plan": [canary_step(5), canary_step(25), canary_step(50, gate=True), canary_step(100)],
        "state": {
            "phase": record["phase"],
            "step": record["step"],
            "steps": 4,
            "describe": "25%",
            "weight": record["weight"],
            "mirror": 0.0,
            "waitingFor": None,
            "nextCheckInSeconds": 12.5,
            "routed": True,
        },
        "lastVerdict": {
            "status": "fail",
            "summary": "fail: success rate 80.1% < 99%",
            "checks": [
                {
                    "name": "success rate",
                    "status": "fail",
                    "candidate": 80.1,
                    "stable": 99.9,
                    "bound": "≥ 99%",
                    "detail": "80.1% < 99%",
                },
                {
                    "name": "p99 latency",
                    "status": "pass",
                    "candidate": 4.2,
                    "stable": 3.9,
                    "bound": "≤ 1.5× stable",
                    "detail": "1.08× stable",
                },
                {
                    "name": "agreement",
                    "status": "skipped",
                    "candidate": None,
                    "stable": None,
                    "bound": "≥ 99%",
                    "detail": "no comparisons",
                },
            ],
            "requests": {"1": 900.0, "2": 301.0},
            "windowSeconds": 30.0,
        },
        "versions": {
            "2": {
                "role": "candidate",
                "requestRate": 10.03,
                "errorRate": 0.199,
                "p99Seconds": 0.0042,
                "shadowRequests": None,
                "agreement": None,
                "labelAgreement": None,
            },
            "1": {
                "role": "stable",
                "requestRate": 30.0,
                "errorRate": 0.001,
                "p99Seconds": 0.0039,
                "shadowRequests": None,
                "agreement": None,
                "labelAgreement": None,
            },
        },
        "windowSeconds": 30.0,
        "events": [
            {
                "id": 1,
                "rolloutId": 7,
                "at": "2026-12-01T16:00:00+00:00",
                "kind": "Started",
                "message": "rollout 3 started by admin",
                "data": {},
            },
            {
                "id": 2,
                "rolloutId": 7,
                "at": "2026-12-01T16:00:31+00:00",
                "kind": "StepAdvanced",
                "message": "step 2 of 4: 25%",
                "data": canary_step(25),
            },
            {
                "id": 3,
                "rolloutId": 7,
                "at": "2026-12-01T16:01:01+00:00",
                "kind": "Check",
                "message": "25%: fail: success rate 80.1% < 99% [a bracket, not markup]",
                "data": {},
            },
        ],
    }


def text(renderable: RenderableType) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(renderable)
    return console.export_text()


def lines_with(shown: str, words: str) -> list[str]:
    """The lines that hold ``words``, each with its runs of spaces made one (table cells are padded)."""
    squeezed = (" ".join(line.split()) for line in shown.splitlines())
    return [line for line in squeezed if words in line]


def test_status_shows_the_step_the_plan_the_traffic_and_the_counts() -> None:
    shown = text(cli.status_view(answer()))
    assert "deployment/iris  rollout 3 (canary)  iris:1 → iris:2  progressing" in shown
    assert "step 2/4: 25%" in shown
    assert "5% › [25%] › 50% (gate) › 100%" in shown  # the current step bracketed, the manual gate marked
    assert "traffic  iris:1 75% · iris:2 25%" in shown
    assert "checks   0 of 1 passed in this step · 1 failed (rollback at 2)" in shown
    assert "next     check in 12.5s" in shown


def test_status_shows_numbers_per_version_stable_first() -> None:
    shown = text(cli.status_view(answer()))
    rows = lines_with(shown, "iris:")
    table = [r for r in rows if r.startswith("│ stable") or r.startswith("│ candidate")]
    assert table == [
        "│ stable iris:1 │ 30 │ 0.1% │ 3.9 │ - │ - │",
        "│ candidate iris:2 │ 10 │ 19.9% │ 4.2 │ - │ - │",
    ]
    assert "Last 30 s per version" in shown


def test_status_shows_the_last_verdict_and_each_check_with_both_values_and_its_bound() -> None:
    shown = text(cli.status_view(answer()))
    assert "Last check: fail — fail: success rate 80.1% < 99%" in shown
    assert lines_with(shown, "success rate │") == ["│ success rate │ fail │ 80.1 │ 99.9 │ ≥ 99% │"]
    assert lines_with(shown, "p99 latency") == ["│ p99 latency │ pass │ 4.2 │ 3.9 │ ≤ 1.5× stable │"]
    assert lines_with(shown, "agreement │ skipped") == ["│ agreement │ skipped │ - │ - │ ≥ 99% │"]


def test_status_shows_the_latest_events_as_written() -> None:
    shown = text(cli.status_view(answer()))
    assert "Events (most recent last)" in shown
    assert "StepAdvanced" in shown
    assert "[a bracket, not markup]" in shown
    many = answer()
    many["events"] = [{**many["events"][0], "id": i, "message": f"event {i}"} for i in range(20)]
    shown = text(cli.status_view(many))
    assert "event 11" not in shown
    assert "event 12" in shown
    assert "event 19" in shown


def test_a_waiting_and_a_paused_rollout_say_what_lets_them_go_on() -> None:
    waiting = answer(phase="waiting", reason="step 50% waits for approval")
    waiting["state"].update(waitingFor="step 50% waits for approval", nextCheckInSeconds=None)
    assert "waiting  for step 50% waits for approval (conveyor rollout approve iris)" in text(
        cli.status_view(waiting)
    )
    paused = answer(phase="paused")
    paused["state"]["nextCheckInSeconds"] = None
    assert "paused   resume with: conveyor rollout resume iris" in text(cli.status_view(paused))


def test_ended_rollouts_show_their_outcome() -> None:
    promoted = answer(
        phase="promoted",
        active=False,
        step=3,
        weight=100.0,
        reason="the last step passed",
        finishedAt="2026-12-01T16:03:00+00:00",
    )
    promoted["lastVerdict"] = None
    shown = text(cli.status_view(promoted))
    assert "step 4/4" in shown
    assert "[" not in lines_with(shown, "› 100%")[0]  # no current step once ended
    assert "traffic  iris:2 100% (promoted)" in shown
    assert "checks" not in shown
    assert lines_with(shown, "ended")[0].endswith(": the last step passed")
    assert "Last check" not in shown
    assert (
        cli.ended_line(promoted["rollout"]) == "rollout 3 of deployment/iris promoted: the last step passed"
    )

    rolled_back = answer(phase="rolled_back", active=False, reason="fail: success rate 80.1% < 99%")
    shown = text(cli.status_view(rolled_back))
    assert "traffic  iris:1 100% (rolled back)" in shown
    assert (
        cli.ended_line(rolled_back["rollout"])
        == "rollout 3 of deployment/iris rolled back: fail: success rate 80.1% < 99%"
    )


@pytest.mark.parametrize(
    ("step", "label"),
    [
        ({"kind": "canary", "weight": 25.0, "mirror": 0.0, "passes": 1, "gate": False}, "25%"),
        ({"kind": "shadow", "weight": 0.0, "mirror": 100.0, "passes": 3, "gate": False}, "shadow 100%"),
        ({"kind": "preview", "weight": 0.0, "mirror": 0.0, "passes": 3, "gate": False}, "preview"),
        ({"kind": "abTest", "weight": 10.0, "mirror": 0.0, "passes": 3, "gate": False}, "A/B 10% of users"),
    ],
)
def test_each_kind_of_step_is_named(step: dict[str, Any], label: str) -> None:
    assert cli.step_label(step) == label


def test_traffic_of_shadow_preview_and_ab_steps() -> None:
    shadow = answer(strategy="shadow", step=0, weight=0.0)
    shadow["state"].update(mirror=50.0, weight=0.0)
    assert cli.traffic_text(shadow["rollout"], shadow["state"]) == (
        "iris:1 100% · iris:2 gets a copy of 50% (shadow: its answers never reach callers)"
    )
    preview = answer(strategy="blueGreen", step=0, weight=0.0)
    preview["state"]["weight"] = 0.0
    assert cli.traffic_text(preview["rollout"], preview["state"]) == (
        "iris:1 100% · iris:2 0% (preview: only requests to its version 2)"
    )
    ab = answer(strategy="abTest", step=0, weight=10.0)
    ab["state"]["weight"] = 10.0
    assert cli.traffic_text(ab["rollout"], ab["state"]) == (
        "iris:1 90% of users · iris:2 10% of users (sticky per user)"
    )


def test_before_the_candidate_has_a_ready_replica_stable_answers_everything() -> None:
    starting = answer(step=0, weight=10.0)
    starting["state"].update(
        weight=10.0, waitingFor="the candidate's replicas", routed=False, nextCheckInSeconds=None
    )
    shown = text(cli.status_view(starting))
    assert "traffic  iris:1 100% (iris:2 gets its share once its replicas are ready)" in shown
    assert "waiting  for the candidate's replicas" in shown
    assert "approve" not in shown


def test_shadow_shows_mirrored_requests_a_second_and_agreement() -> None:
    shadow = answer(strategy="shadow", step=0, weight=0.0)
    shadow["plan"] = [{"kind": "shadow", "weight": 0.0, "mirror": 100.0, "passes": 3, "gate": False}]
    shadow["state"].update(describe="shadow 100%", mirror=100.0, weight=0.0)
    shadow["versions"]["2"].update(requestRate=None, shadowRequests=900.0, agreement=0.9612)
    shown = text(cli.status_view(shadow))
    assert "step 1/1: shadow 100%" in shown
    assert "0 of 3 passed in this step" in shown
    assert lines_with(shown, "candidate iris:2") == ["│ candidate iris:2 │ - │ 19.9% │ 4.2 │ 30 │ 96.12% │"]


def test_a_version_without_data_in_the_window_shows_dashes() -> None:
    fresh = answer()
    fresh["versions"] = {"1": {"role": "stable"}, "2": {"role": "candidate"}}
    shown = text(cli.status_view(fresh))
    assert lines_with(shown, "stable iris:1") == ["│ stable iris:1 │ - │ - │ - │ - │ - │"]


@pytest.mark.parametrize(
    ("action", "changes", "line"),
    [
        (
            "pause",
            {"phase": "paused"},
            "rollout 3 of deployment/iris paused at step 2 (25% of requests to iris:2): resume with "
            "`conveyor rollout resume iris`",
        ),
        ("resume", {}, "rollout 3 of deployment/iris progressing: step 2 (25% of requests to iris:2)"),
        (
            "approve",
            {"step": 2, "weight": 50.0},
            "rollout 3 of deployment/iris approved: step 3 (50% of requests to iris:2)",
        ),
        (
            "approve",
            {"phase": "promoted", "weight": 100.0, "reason": "approved by admin"},
            "rollout 3 of deployment/iris promoted: iris:2 takes all traffic (approved by admin)",
        ),
        (
            "abort",
            {"phase": "rolled_back", "reason": "aborted by admin"},
            "rollout 3 of deployment/iris rolled back: all traffic to iris:1, iris:2's replicas drain "
            "(aborted by admin)",
        ),
        (
            "promote",
            {"phase": "promoted", "weight": 100.0, "reason": "promoted by admin, skipping the analysis"},
            "rollout 3 of deployment/iris promoted: iris:2 takes all traffic (skipping the analysis)",
        ),
    ],
)
def test_each_command_says_in_one_line_what_happened(action: str, changes: dict[str, Any], line: str) -> None:
    assert cli.action_line(action, "iris", answer(**changes)["rollout"]) == line


def test_start_names_the_rollout_and_how_to_watch_it() -> None:
    started = answer(step=0, weight=5.0, failedChecks=0)["rollout"]
    assert cli.started_line("iris", 5, started) == (
        "rollout 3 of deployment/iris started: canary, iris:1 → iris:2 (revision 5); "
        "watch it: conveyor rollout status iris --watch"
    )
    assert "(forced: the validation gate skipped, audited)" in cli.started_line(
        "iris", 5, {**started, "forced": True}
    )


def test_history_lists_each_rollout_with_its_outcome() -> None:
    failed = answer(number=2, phase="rolled_back", active=False, reason="fail: p99 latency 5.1× stable")
    rows = [  # oldest first, as the registry lists them: shown newest first
        answer(number=1, phase="promoted", active=False, reason="the last step passed")["rollout"],
        failed["rollout"],
    ]
    shown = text(cli.history_table("iris", rows))
    assert shown.index("rolled back") < shown.index("promoted")
    assert "deployment/iris: rollouts" in shown
    assert lines_with(shown, "rolled back")[0].startswith("│ 2 │ canary │ iris:1 → iris:2 │ rolled back │")
    assert lines_with(shown, "rolled back")[0].endswith("│ fail: p99 latency 5.1× stable │")
    assert lines_with(shown, "promoted")[0].endswith("│ the last step passed │")


def test_describe_deployment_summarises_an_active_rollout() -> None:
    brief = {"number": 3, "strategy": "canary", "phase": "progressing", "candidateModel": "iris:2", "step": 1}
    assert cli.summary_line("iris", brief) == (
        "3 (canary) to iris:2: progressing at step 2; conveyor rollout status iris"
    )
    del brief["step"]
    assert (
        cli.summary_line("iris", brief) == "3 (canary) to iris:2: progressing; conveyor rollout status iris"
    )


def deployment(**extra: Any) -> dict[str, Any]:
    """GET /deployments/{name} of a deployment at revision 5 whose 2 desired replicas are ready and routed,
    with the stable's 2 still running."""
    counts = {"revision": 5, "desired": 2, "ready": 2, "total": 4}
    return {"name": "iris", "revision": 5, "model": "iris:2", "routed": True, "replicas": counts, **extra}


def test_apply_wait_during_a_rollout_waits_for_the_candidates_replicas_only() -> None:
    rollout = {"number": 3, "phase": "progressing", "strategy": "canary", "candidateModel": "iris:2"}
    assert not rolled_out(deployment())  # no rollout: the old replicas must be gone
    assert rolled_out(deployment(rollout=rollout))
    starting = deployment(rollout=rollout)
    starting["replicas"] = {**starting["replicas"], "ready": 1}
    assert not rolled_out(starting)
    assert not rolled_out(deployment(rollout=rollout, routed=False))
    assert done_line(deployment(rollout=rollout)) == "rollout 3 started: conveyor rollout status iris --watch"
    plain = deployment()
    plain["replicas"]["total"] = 2
    assert done_line(plain) == "deployment/iris rolled out: 2/2 replicas of iris:2"


class Answers:
    """A stand-in for the ApiClient: each GET of the rollout gives the next answer (an exception is
    raised), the history route the rows given."""

    def __init__(self, answers: list[Any], history: list[dict[str, Any]] | None = None) -> None:
        self.answers = answers
        self.history = history or []
        self.paths: list[str] = []

    def get(self, path: str) -> dict[str, Any]:
        self.paths.append(path)
        if path.startswith("/deployments/iris/rollouts"):
            return {"rollouts": self.history}
        found = self.answers.pop(0)
        if isinstance(found, Exception):
            raise found
        return copy.deepcopy(found)  # type: ignore[no-any-return]


def test_watching_follows_the_rollout_until_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "WATCH_EVERY_S", 0.0)
    shown: list[RenderableType] = []
    api = Answers(
        [
            answer(step=2, weight=50.0),
            Unavailable("control plane not reachable"),  # a restart: asked again
            answer(phase="promoted", active=False, step=3, weight=100.0),
        ]
    )
    final = cli._follow(api, "iris", answer(), shown.append)  # type: ignore[arg-type]
    assert final["rollout"]["phase"] == "promoted"
    assert len(shown) == 3
    assert "control plane not reachable (asking again)" in text(shown[1])


def test_watching_a_rollout_superseded_by_another_ends_with_its_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "WATCH_EVERY_S", 0.0)
    ours = answer(phase="superseded", active=False, reason="revision 6 runs iris:3")["rollout"]
    api = Answers([answer(number=4)], history=[answer(number=4)["rollout"], ours])
    final = cli._follow(api, "iris", answer(), lambda shown: None)  # type: ignore[arg-type]
    assert final["rollout"]["number"] == 3
    assert final["rollout"]["phase"] == "superseded"


def test_watching_gives_up_on_a_control_plane_away_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "WATCH_EVERY_S", 0.0)
    monkeypatch.setattr(cli, "WATCH_OUTAGE_S", -1.0)
    api = Answers([Unavailable("down"), Unavailable("down")])
    with pytest.raises(Unavailable, match="down"):
        cli._follow(api, "iris", answer(), lambda shown: None)  # type: ignore[arg-type]
