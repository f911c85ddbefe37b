"""Rollout routes of the management API (docs/rollouts.md): a deployment's rollout with its plan, state,
checks, live numbers per version and events; start one; pause, resume, approve, abort, promote.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from conveyor import errors
from conveyor.control import rollout_ops
from conveyor.control.rollout_plan import plan
from conveyor.control.rollouts import Live, RolloutController, version_of
from conveyor.observe import alert_expr
from conveyor.observe.history import StackHistory
from conveyor.registry import Registry
from conveyor.registry.records import RolloutInfo
from conveyor.security.tokens import Principal
from conveyor.spec.rollout import RolloutSpec

ACTIONS = ("pause", "resume", "approve", "abort", "promote")
LIVE_WINDOW_S = 30.0
"""The window of the live numbers per version (at least the rollout's interval)."""


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(description="The candidate: MODEL:VERSION or MODEL@ALIAS.")
    strategy: Literal["canary", "blueGreen", "shadow", "abTest"] | None = Field(
        default=None, description="Overrides spec.rollout.strategy (default: the spec's, else canary)."
    )
    force: bool = Field(
        default=False, description="Give traffic to a version marked not validated (audited)."
    )


def rollout_routes(registry: Registry, state: Any, read: Any, deploy: Any, changed: Any) -> APIRouter:
    """``state``: the app's state, whose ``rollouts`` (the controller) and ``history`` are set by the control
    plane; ``changed(name)``: tell the reconciler and the controller that a deployment changed."""
    api = APIRouter(tags=["rollouts"])

    def controller() -> RolloutController:
        found = getattr(state, "rollouts", None)
        if found is None:
            raise errors.Unavailable("this server runs no rollout controller")
        return found  # type: ignore[no-any-return]

    @api.get("/deployments/{name}/rollout")
    async def status(
        name: str,
        who: Principal = read,
        events: Annotated[int, Query(ge=0, le=10_000)] = 200,
    ) -> dict[str, Any]:
        """The active rollout of the deployment, or its latest: plan, state, last verdict, live numbers per
        version over the last 30 s (or the interval, if longer), and its events (oldest first)."""
        info = await run_in_threadpool(registry.rollouts.get, name)
        found = await run_in_threadpool(registry.rollouts.events, info.id, events)
        live = controller().live(name) if getattr(state, "rollouts", None) is not None else None
        history: StackHistory | None = getattr(state, "history", None)
        return describe(info, [e.to_dict() for e in found], live, history)

    @api.get("/deployments/{name}/rollouts")
    async def listing(
        name: str, who: Principal = read, limit: Annotated[int, Query(ge=1, le=1000)] = 20
    ) -> dict[str, Any]:
        """The deployment's rollouts, newest first."""
        await run_in_threadpool(registry.deployments.get, name)  # 404 for a typo
        rows = await run_in_threadpool(registry.rollouts.list, name, limit)
        return {"rollouts": [r.to_dict() for r in reversed(rows)]}  # the store's are oldest first

    @api.post("/deployments/{name}/rollout")
    async def start(name: str, body: StartBody, who: Principal = deploy) -> dict[str, Any]:
        """Start a rollout to ``to``: a new revision with that model (the current spec otherwise), judged
        by the spec's rollout (or ``strategy``)."""
        revision, started = await run_in_threadpool(
            rollout_ops.start_by_command,
            registry,
            name,
            body.to,
            strategy=body.strategy,
            force=body.force,
            user=who.actor,
        )
        changed(name)
        return {"revision": revision, "rollout": started.to_dict()}

    @api.post("/deployments/{name}/rollout/{action}")
    async def act(name: str, action: str, who: Principal = deploy) -> dict[str, Any]:
        """pause (checks stop, weights stay), resume, approve (a manual gate or a waiting promotion), abort
        (roll back now) or promote (skip the analysis: the candidate takes all traffic); each audited."""
        if action not in ACTIONS:
            raise errors.NotFound(f"unknown rollout action {action!r}; use one of {', '.join(ACTIONS)}")
        info = await controller().command(name, action, who.actor)
        return {"rollout": info.to_dict()}

    return api


def describe(
    info: RolloutInfo, events: list[dict[str, Any]], live: Live | None, history: StackHistory | None
) -> dict[str, Any]:
    spec = RolloutSpec.model_validate(info.spec)
    steps = plan(spec)
    stable, candidate = version_of(info.stable_model), version_of(info.candidate_model)
    window_s = max(LIVE_WINDOW_S, spec.interval_seconds)
    out: dict[str, Any] = {
        "rollout": info.to_dict(),
        "plan": [s.to_dict() for s in steps],
        "state": _state(info, spec, live, steps),
        "lastVerdict": _last_verdict(live, events),
        "versions": _numbers(history, info.deployment, stable, candidate, window_s),
        "windowSeconds": window_s,
        "events": events,
    }
    return out


def _state(info: RolloutInfo, spec: RolloutSpec, live: Live | None, steps: Any) -> dict[str, Any]:
    step = steps[min(info.step, len(steps) - 1)]
    state: dict[str, Any] = {
        "phase": info.phase,
        "step": info.step,
        "steps": len(steps),
        "describe": step.describe(),
        "weight": info.weight,
        "mirror": step.mirror,
        "waitingFor": None,
        "nextCheckInSeconds": None,
        "routed": False,
    }
    if not info.active:
        return state
    if info.phase == "waiting":
        state["waitingFor"] = info.reason or "approval"
    state["routed"] = None  # not known before the controller has taken the rollout up
    if live is not None:
        state["routed"] = live.step_clock is not None  # the split is in the gateways' table
        if live.step_clock is None and info.phase == "progressing":
            state["waitingFor"] = "the candidate's replicas"
        elif info.phase == "progressing":
            due = live.last_check + spec.interval_seconds - time.monotonic()
            state["nextCheckInSeconds"] = round(max(0.0, due), 1)
    return state


def _last_verdict(live: Live | None, events: list[dict[str, Any]]) -> dict[str, Any] | None:
    if live is not None and live.verdict is not None:
        return live.verdict.to_dict()
    for event in reversed(events):
        data = event.get("data") or {}
        if isinstance(data, dict) and "verdict" in data:
            return data["verdict"]  # type: ignore[no-any-return]
    return None


def _numbers(
    history: StackHistory | None, deployment: str, stable: str, candidate: str, window_s: float
) -> dict[str, dict[str, Any]]:
    """Per version: its role, requests a second, error rate, p99 (ms), and for the candidate the shadow
    requests and the agreement of compared answers; None where the window has no data."""
    rows: dict[str, dict[str, Any]] = {
        stable: {"role": "stable"},
        candidate: {"role": "candidate"},
    }
    if history is None:
        return rows
    wanted = {
        "requestRate": alert_expr.build("request_rate", window_s=window_s),
        "errorRate": alert_expr.build("error_rate", window_s=window_s),
        "p99Seconds": alert_expr.build("latency_quantile", window_s=window_s, quantile=0.99),
        "shadowRequests": alert_expr.build("shadow_requests", window_s=window_s),
        "agreement": alert_expr.build("agreement", window_s=window_s),
        "labelAgreement": alert_expr.build("label_agreement", window_s=window_s),
    }
    for key, expr in wanted.items():
        values = expr.values(history, deployment)
        for version, row in rows.items():
            value = values.get(version)
            row[key] = None if value is None or value != value else round(value, 6)  # NaN: no data
    return rows
