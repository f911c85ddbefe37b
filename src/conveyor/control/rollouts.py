"""The rollout controller (docs/rollouts.md): moves a candidate version through its plan, judges it at every
interval from live metrics, and promotes it or rolls it back.

The registry holds every rollout and its events (the truth, read again after a restart); this object keeps
what runs now: the plan, when the next check is due, the last verdict, and the split each deployment's
routing table carries. The reconciler asks ``splits()`` whenever it builds a table, and tells the
controller which splits the last table could carry (``routed``: the candidate has a ready replica).

A step's clock starts when its split is routed; a check runs every ``interval`` over the window of that
interval. On rollback the split goes at once (a new table is published before anything is written), then
the registry gets a revision equal to the stable one; the reconciler drains the candidate's replicas.
After a restart the rollout goes on from the stored step, and that step's checks start over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from conveyor import errors
from conveyor.control import rollout_hooks as hooks
from conveyor.control.analysis import HistoryProvider, PrometheusProvider, Verdict, analyse
from conveyor.control.rollout_plan import Step, decide, plan, traffic
from conveyor.observe.history import StackHistory
from conveyor.observe.notify import Notifier
from conveyor.protocol.table import ABMatch, SplitSpec
from conveyor.registry import Registry
from conveyor.registry.records import RolloutInfo
from conveyor.spec.rollout import RolloutSpec
from conveyor.tasks import cancel_all

log = logging.getLogger("conveyor.rollouts")
TICK_S = 0.25
LINGER_S = 3.0
SYSTEM_ACTOR = "conveyor"
NOT_VALIDATED_TAG = ("validated", "false")


@dataclass(frozen=True)
class _Move:
    """A command that moves a rollout from one phase to another: the phase it needs (None: any), the one it
    leads to, its event's reason, and the end of the refusal when the rollout is elsewhere."""

    needs: str | None
    to: str
    event: str
    refusal: str = ""


_MOVES = {
    "pause": _Move(None, "paused", "Paused"),
    "resume": _Move("paused", "progressing", "Resumed", ", not paused"),
    "approve": _Move("waiting", "progressing", "Approved", ": nothing waits for approval"),
}
"""A version tagged so has not passed its validation gates: it gets no more than a shadow's share."""


class RolloutRuntime(Protocol):
    """What the controller asks of the reconciler."""

    def publish_now(self) -> None:
        """Build and publish the routing table now (the splits as ``splits()`` gives them)."""
        ...

    def changed(self, deployment: str | None = None) -> None: ...

    def split_routed(self, deployment: str) -> bool:
        """The last table carried the deployment's split (its candidate has a ready replica)."""
        ...


def version_of(model: str | None) -> str:
    """``"iris:2"`` → ``"2"``: the version a model reference is routed as ("" for none)."""
    return (model or "").rpartition(":")[2]


@dataclass(eq=False, slots=True)
class Live:
    """One active rollout as the controller runs it."""

    info: RolloutInfo
    spec: RolloutSpec
    steps: tuple[Step, ...]
    validated: bool
    step_clock: float | None = None
    """When the current step's split was first routed (monotonic); None: not yet."""
    last_check: float = 0.0
    window_start: float = 0.0
    """Where the next check's window begins, in the history's time (the wall clock of its scrapes): when the
    step's split was routed, then the end of the last window. Windows never reach into the step before."""
    progress_at: float = field(default_factory=time.monotonic)
    verdict: Verdict | None = None
    promoting: bool = False
    ending: float | None = None
    """When the rollout ended (promoted or rolled back), monotonic: kept ``LINGER_S`` more, so the split of
    a promotion stays until the reconciler has read the registry again."""
    gate_asked: float = 0.0

    @property
    def name(self) -> str:
        return self.info.deployment

    @property
    def stable(self) -> str:
        return version_of(self.info.stable_model)

    @property
    def candidate(self) -> str:
        return version_of(self.info.candidate_model)

    @property
    def step(self) -> Step:
        return self.steps[min(self.info.step, len(self.steps) - 1)]


class RolloutController:
    def __init__(
        self,
        registry: Registry,
        history: StackHistory,
        runtime: RolloutRuntime,
        *,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` times intervals and deadlines; ``wall`` is the history's clock (its scrapes' times)."""
        self.registry = registry
        self.history = history
        self.runtime = runtime
        self.notifier = notifier or Notifier()
        self._clock = clock
        self._wall = wall
        self._live: dict[str, Live] = {}
        self.may_act: Callable[[], bool] = lambda: True
        """Asked before every tick: False while another control plane leads (control/leader.py)."""
        self._reload = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()  # one writer of a rollout at a time: the loop or an API command

    # -- what the reconciler reads ----------------------------------------------------------------------

    def splits(self) -> list[SplitSpec]:
        out = []
        for live in list(self._live.values()):
            if live.ending is not None and not live.promoting:
                continue
            step = live.step
            now = traffic(step, live.spec.analysis.compare)
            weight = 100.0 if live.promoting else now.weight
            ab = None
            if step.kind == "abTest" and not live.promoting:
                a = live.spec.ab_test
                assert a is not None
                ab = ABMatch(
                    header=a.header.name if a.header else None,
                    header_value=a.header.value if a.header else None,
                    cookie=a.cookie,
                    user_header=a.user_header,
                )
            out.append(
                SplitSpec(
                    name=live.name,
                    stable=live.stable,
                    candidate=live.candidate,
                    weight=weight,
                    mirror=0.0 if live.promoting else now.mirror,
                    compare=0.0 if live.promoting else now.compare,
                    tolerance=live.spec.analysis.tolerance,
                    ab=ab,
                    seed=f"{live.name}/{live.info.number}",
                )
            )
        return out

    def live(self, deployment: str) -> Live | None:
        return self._live.get(deployment)

    def summary(self, deployment: str) -> dict[str, Any] | None:
        live = self._live.get(deployment)
        if live is None or live.ending is not None:
            return None
        info = live.info
        return {
            "number": info.number,
            "strategy": info.strategy,
            "phase": info.phase,
            "stableModel": info.stable_model,
            "candidateModel": info.candidate_model,
            "step": info.step,
            "weight": info.weight,
            "routed": live.step_clock is not None,
        }

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.reload()
        await self.notifier.start()
        self._http = httpx.AsyncClient(trust_env=False)
        self._task = asyncio.create_task(self._run(), name="rollouts")

    async def stop(self) -> None:
        await cancel_all([self._task])
        self._task = None
        await self.notifier.drain(2.0)
        await self.notifier.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def changed(self) -> None:
        """A rollout was started or changed outside the loop: read the registry again."""
        self._reload.set()

    async def reload(self) -> None:
        rows = await asyncio.to_thread(self.registry.rollouts.active_all)
        async with self._lock:
            found = {r.deployment: r for r in rows}
            for name, live in list(self._live.items()):
                row = found.get(name)
                if row is not None and row.id != live.info.id:
                    self._live.pop(name)  # superseded by a newer rollout: loaded below
                elif row is None and live.ending is None:
                    self._live.pop(name)  # ended elsewhere (the deployment deleted); one ending lingers
            for name, info in found.items():
                known = self._live.get(name)
                if known is not None:
                    known.info = info
                elif (loaded := await asyncio.to_thread(self._load, info)) is not None:
                    self._live[name] = loaded

    def _load(self, info: RolloutInfo) -> Live | None:
        """The rollout as the controller runs it; None when the deployment left it behind (a rollback whose
        revision was written when the control plane stopped before it could mark the rollout: marked now)."""
        try:
            current = self.registry.deployments.get(info.deployment)
        except errors.NotFound:
            return None
        if current.revision > info.candidate_revision and current.model == info.stable_model:
            why = f"revision {current.revision} runs {current.model} again (a rollback finished at restart)"
            self.registry.rollouts.update(
                info.id, phase="rolled_back", reason=why, event=("RolledBack", why, None)
            )
            return None
        spec = RolloutSpec.model_validate(info.spec)
        name, _, number = (info.candidate_model or "").rpartition(":")
        try:
            tags = self.registry.get_version(name, int(number)).tags
        except (errors.NotFound, ValueError):
            tags = {}
        validated = tags.get(NOT_VALIDATED_TAG[0]) != NOT_VALIDATED_TAG[1] or info.forced
        return Live(info, spec, plan(spec), validated, progress_at=self._clock())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._reload.wait()
            if not self.may_act():  # another control plane leads: its controller runs the rollouts
                await asyncio.sleep(TICK_S)  # the reload event may be set: do not spin on it
                continue
            try:
                if self._reload.is_set():
                    self._reload.clear()
                    await self.reload()
                    self.runtime.publish_now()
                await self.tick()
            except Exception:  # the loop outlives one failure (a locked database, a bad provider answer)
                log.exception("rollout step failed")

    # -- the loop ----------------------------------------------------------------------------------------

    async def tick(self) -> None:
        for live in list(self._live.values()):
            async with self._lock:
                if self._live.get(live.name) is not live:
                    continue
                now = self._clock()
                if live.ending is None:
                    await self._advance(live, now)
                elif now - live.ending > LINGER_S:
                    self._live.pop(live.name, None)

    async def _advance(self, live: Live, now: float) -> None:
        info = live.info
        deadline = live.spec.progress_deadline_seconds
        if info.phase == "progressing" and now - live.progress_at > deadline:
            await self._rollback(
                live, f"no progress within the progress deadline ({live.spec.progress_deadline})"
            )
            return
        if info.phase == "paused":
            return
        if live.step_clock is None:
            if not self.runtime.split_routed(live.name):
                return  # the candidate's replicas are starting: its traffic waits for them
            live.step_clock = live.last_check = now
            live.window_start = self._wall()
        interval = live.spec.interval_seconds
        if info.phase == "waiting":
            if now - live.gate_asked >= interval:
                live.gate_asked = now
                await self._ask_gate(live)
            return
        window = self._window(live, now, interval)
        if window is None:
            return
        live.last_check = now
        verdict = await self._check(live, window)
        live.verdict = verdict
        outcome = decide(
            live.steps,
            info.step,
            info.passed_checks,
            info.failed_checks,
            verdict.status,
            threshold=live.spec.threshold,
            manual_promotion=live.spec.promotion.manual,
        )
        data = {"verdict": verdict.to_dict(), "decision": outcome.action}
        summary = f"{live.step.describe()}: {verdict.summary()}"
        hooks.notify(self.notifier, live.spec.webhooks, "check", self._body(live, "check", summary))
        if outcome.action == "rollback":
            why = f"{verdict.summary()} ({outcome.why})"
            await self._rollback(live, why, verdict=data, failed_checks=outcome.failed)
            return
        changes: dict[str, Any] = {"passed_checks": outcome.passed, "failed_checks": outcome.failed}
        await self._write(live, event=("Check", summary, data), **changes)
        if outcome.action == "promote":
            await self._gate_then(live, "promotion")
        elif outcome.action == "advance":
            await self._gate_then(live, "step")
        elif outcome.action == "approve":
            await self._wait(live, outcome.why)

    def _window(self, live: Live, now: float, interval: float) -> float | None:
        """The seconds the check due now judges, or None when none is due. With the built-in history, a
        check waits for a scrape a whole interval after the window began (so a window holds only this
        step's traffic, whatever the scrape lag); with Prometheus, every interval."""
        if live.spec.analysis.prometheus is not None:
            return interval if now - live.last_check >= interval else None
        last = self.history.last_time
        if last is None or last - live.window_start < interval:
            return None
        window, live.window_start = last - live.window_start, last
        return window

    async def _check(self, live: Live, window_s: float) -> Verdict:
        analysis = live.spec.analysis
        provider: Any = HistoryProvider(self.history)
        if analysis.prometheus is not None:  # the controller's client: one pool, closed at stop
            provider = PrometheusProvider(
                str(analysis.prometheus.url),
                timeout_s=analysis.prometheus.timeout_seconds,
                client=self._client(),
            )
        return await analyse(
            analysis,
            provider,
            live.name,
            stable=live.stable,
            candidate=live.candidate,
            window_s=window_s,
            shadow=live.step.kind == "shadow",
        )

    async def _gate_then(self, live: Live, gate: str) -> None:
        """Promote or enter the next step, once the confirmation hooks (and the validation gate) allow."""
        if not self._validated_for(live, gate):
            await self._wait(
                live,
                f"{live.info.candidate_model} is not validated: only a shadow may run it "
                "(start the rollout with --force to go on, audited)",
            )
            return
        if not await hooks.confirmed(self._client(), live.spec.webhooks, gate, self._body(live, gate, "")):
            await self._wait(live, f"waiting for the confirm-{gate} webhook")
            return
        if gate == "promotion":
            await self._promote(live, SYSTEM_ACTOR, "the last step passed")
        else:
            await self._next_step(live)

    def _validated_for(self, live: Live, gate: str) -> bool:
        if live.validated:
            return True
        following = live.steps[live.info.step + 1] if gate == "step" else None
        return following is not None and following.kind == "shadow"

    async def _ask_gate(self, live: Live) -> None:
        """In phase waiting: a confirmation hook that now answers 2xx lets the rollout go on (a manual gate
        waits for ``approve``)."""
        gate = "promotion" if live.info.step + 1 >= len(live.steps) else "step"
        manual = live.spec.promotion.manual if gate == "promotion" else live.steps[live.info.step + 1].gate
        gates = [h for h in live.spec.webhooks if h.confirm == gate]
        if manual or not gates or not self._validated_for(live, gate):
            return
        if await hooks.confirmed(self._client(), live.spec.webhooks, gate, self._body(live, gate, "")):
            await self._write(
                live, phase="progressing", event=("Confirmed", f"confirm-{gate} webhook said go", None)
            )
            live.progress_at = self._clock()
            if gate == "promotion":
                await self._promote(live, SYSTEM_ACTOR, "confirmed by webhook")
            else:
                await self._next_step(live)

    async def _wait(self, live: Live, why: str) -> None:
        if live.info.phase != "waiting":
            await self._write(live, phase="waiting", reason=why, event=("Waiting", why, None))
            live.gate_asked = self._clock()

    async def _next_step(self, live: Live) -> None:
        index = live.info.step + 1
        step = live.steps[index]
        now = datetime.now(UTC)
        message = f"step {index + 1} of {len(live.steps)}: {step.describe()}"
        await self._write(
            live,
            phase="progressing",
            step=index,
            weight=step.weight,
            passed_checks=0,
            step_started_at=now,
            reason=None,
            event=("StepAdvanced", message, step.to_dict()),
        )
        live.step_clock, live.progress_at = None, self._clock()
        self.runtime.publish_now()
        self._deployment_event(live, "RolloutStep", message)
        hooks.notify(self.notifier, live.spec.webhooks, "step", self._body(live, "step", message))

    # -- endings -----------------------------------------------------------------------------------------

    async def _promote(self, live: Live, actor: str, why: str, *, forced: bool = False) -> None:
        live.promoting, live.ending = True, self._clock()
        self.runtime.publish_now()  # all traffic to the candidate before the stable side is released
        message = f"{live.info.candidate_model} promoted: {why}"
        alias = live.spec.promotion.alias
        await self._write(
            live,
            phase="promoted",
            weight=100.0,
            finished_at=datetime.now(UTC),
            reason=why,
            actor=actor,
            audit_action="rollout.promote",
            audit_details={"forced": forced, "why": why},
            event=("Promoted", message, None),
        )
        if alias:
            name, _, number = (live.info.candidate_model or "").rpartition(":")
            try:
                await asyncio.to_thread(self.registry.set_alias, name, int(number), alias, user=actor)
                message += f"; {name}@{alias} now points to version {number}"
            except errors.ConveyorError as exc:
                log.warning("rollout of %s promoted, but alias %s not moved: %s", live.name, alias, exc)
        self._deployment_event(live, "RolloutPromoted", message)
        hooks.notify(self.notifier, live.spec.webhooks, "promotion", self._body(live, "promotion", message))
        self.runtime.changed(live.name)

    async def _rollback(
        self,
        live: Live,
        why: str,
        *,
        actor: str = SYSTEM_ACTOR,
        verdict: dict[str, Any] | None = None,
        failed_checks: int | None = None,
    ) -> None:
        live.ending = self._clock()
        self.runtime.publish_now()  # every request to stable from the next table on, before any write
        info = live.info
        cause = f"rollout {info.number} rolled back: {why}"
        try:
            await asyncio.to_thread(
                self.registry.deployments.rollback,
                live.name,
                info.stable_revision,
                created_by=actor,
                change_cause=cause[:500],
            )
        except errors.ConveyorError as exc:  # the deployment was deleted meanwhile, or the database is away
            log.warning("rollback of %s: the revision was not written: %s", live.name, exc)
        counts = {} if failed_checks is None else {"failed_checks": failed_checks}
        await self._write(
            live,
            phase="rolled_back",
            finished_at=datetime.now(UTC),
            **counts,
            reason=why[:1000],
            actor=actor,
            audit_action="rollout.rollback",
            audit_details={"why": why[:1000]},
            event=("RolledBack", why, verdict),
        )
        log.warning("rollout %d of %s rolled back: %s", info.number, live.name, why)
        self._deployment_event(live, "RolloutRolledBack", f"{info.candidate_model}: {why}")
        hooks.notify(self.notifier, live.spec.webhooks, "rollback", self._body(live, "rollback", why))
        self.runtime.changed(live.name)

    # -- commands (the management API) -------------------------------------------------------------------

    async def command(self, deployment: str, action: str, actor: str) -> RolloutInfo:
        """pause, resume, approve, abort (a rollback) or promote (skips the analysis); audited."""
        async with self._lock:
            live = self._live.get(deployment)
            if live is None or live.ending is not None:
                raise errors.Conflict(f"deployment {deployment!r} has no rollout in progress")
            if action == "abort":
                await self._rollback(live, f"aborted by {actor}", actor=actor)
                return live.info
            if action == "promote":
                await self._promote(live, actor, f"promoted by {actor}, skipping the analysis", forced=True)
                return live.info
            move = _MOVES.get(action)
            if move is None:
                raise errors.InvalidInput(f"unknown rollout action {action!r}")
            phase = live.info.phase
            if move.needs is None and phase == move.to:
                return live.info  # already there: pausing a paused rollout is not an error
            if move.needs is not None and phase != move.needs:
                raise errors.Conflict(f"the rollout of {deployment!r} is {phase}{move.refusal}")
            last_step = live.info.step + 1 >= len(live.steps)
            if action == "approve" and not self._validated_for(live, "promotion" if last_step else "step"):
                raise errors.Conflict(
                    f"{live.info.candidate_model} is not validated: only a shadow may run it; start the "
                    "rollout again with --force to give it traffic (audited)"
                )
            await self._write(
                live,
                phase=move.to,
                actor=actor,
                audit_action=f"rollout.{action}",
                event=(move.event, f"{move.event.lower()} by {actor}", None),
            )
            if action == "resume":
                live.progress_at = live.last_check = self._clock()
                live.window_start = self._wall()  # the paused time is not judged
            elif action == "approve":
                live.progress_at = self._clock()
                if last_step:
                    await self._promote(live, actor, f"approved by {actor}")
                else:
                    await self._next_step(live)
            return live.info

    # -- helpers -----------------------------------------------------------------------------------------

    async def _write(
        self,
        live: Live,
        *,
        event: tuple[str, str, Any] | None = None,
        actor: str | None = None,
        audit_action: str | None = None,
        audit_details: dict[str, Any] | None = None,
        **changes: Any,
    ) -> None:
        live.info = await asyncio.to_thread(
            self.registry.rollouts.update,
            live.info.id,
            actor=actor,
            audit_action=audit_action,
            audit_details=audit_details,
            event=event,
            **changes,
        )

    def _deployment_event(self, live: Live, kind: str, message: str) -> None:
        def record() -> None:
            with contextlib.suppress(errors.ConveyorError):
                self.registry.deployments.record_event(live.name, kind, message[:2000])

        task = asyncio.get_running_loop().run_in_executor(None, record)
        task.add_done_callback(lambda _: None)

    def _body(self, live: Live, event: str, message: str) -> dict[str, Any]:
        return hooks.payload(event, live.name, live.info.to_dict(), message)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(trust_env=False)
        return self._http
