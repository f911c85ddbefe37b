"""The reconciler: deployments in the registry (desired) → replicas on their targets (actual).

One asyncio loop, woken by changes (apply, scale, a gateway holding a request) and every ``TICK_S``:

1. replicas that exited are removed (and replaced after a backoff); starting ones are probed until ready;
   ready ones that keep failing probes are killed and replaced;
2. per deployment: start the replicas its current template lacks, drain extras, and once the new template's
   replicas are all ready drain the old ones (zero-downtime version change);
3. the routing table is rebuilt from ready replicas and pushed to gateways; a draining replica is stopped
   (``drain=True``) only after every live gateway acknowledged a table without it, then finishes its
   in-flight requests.
   After a restart that adopted running replicas, which gateways are live is unknown until they report
   (``RoutingState.gateways_unknown``): nothing is stopped before that, so a rollout the previous control
   plane left half done drops nothing.

Probes run as background tasks: a replica that stops answering (SIGSTOP, a hung event loop) costs its own
probe timeout, never a stalled reconcile step. Replicas run on the target their deployment names
(``spec.target``), reached only through the ``Target`` interface (targets/base.py).

Implements ``ControlRuntime`` for the management API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from conveyor import errors
from conveyor.control.actual import DeploymentRun, Replica
from conveyor.control.autoscaler import AutoscalerState, decide, observe
from conveyor.control.desired import Desired, DesiredLoader, start_hold
from conveyor.control.events import DeploymentEvents
from conveyor.control.inprocess import InProcessReplicas
from conveyor.control.publisher import RoutingState, build_routes
from conveyor.digests import EXIT_DATA_LOSS
from conveyor.observe.collectors import track_control
from conveyor.observe.control_metrics import ControlMetrics
from conveyor.registry import Registry
from conveyor.settings import Settings
from conveyor.targets.backoff import Backoff
from conveyor.targets.base import Launch, ReplicaRecord, Target
from conveyor.targets.probe import probe
from conveyor.targets.select import Targets
from conveyor.targets.state import ReplicaState

if TYPE_CHECKING:
    from conveyor.control.leader import LeaderElection
    from conveyor.protocol.table import SplitSpec
    from conveyor.security.tokens import TokenRecord


class RolloutSplits(Protocol):
    def splits(self) -> list[SplitSpec]:
        """The traffic split of every deployment in a rollout (the reconciler keeps those it can route)."""
        ...

    def changed(self) -> None:
        """Desired state changed: read the rollouts again."""
        ...

    def summary(self, deployment: str) -> dict[str, Any] | None:
        """The deployment's rollout in progress, in a few fields (ControlRuntime.rollout), or None."""
        ...


log = logging.getLogger("conveyor.control")
TICK_S = 0.25
RELOAD_S = 2.0
READY_PROBE_S = 1.0
UNHEALTHY_AFTER = 3
ACK_TIMEOUT_S = 5.0
SCALE_SAMPLE_S = 0.5


class Reconciler:
    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        targets: Targets,
        *,
        state: ReplicaState | None = None,
        backoff: Backoff | None = None,
        drain_timeout_s: float | None = None,
    ) -> None:
        """``state``: where the replicas are recorded for a restarted control plane (default: the home's)."""
        self.registry = registry
        self.settings = settings
        self.targets = targets
        self.state = state or ReplicaState(settings.home / "run")
        self.backoff = backoff or Backoff()
        self.drain_timeout_s = drain_timeout_s or settings.request_timeout_ms / 1000 + 5.0
        self.tables = RoutingState()
        self.epoch = self.tables.epoch
        self._loader = DesiredLoader(registry, settings)
        self._start_hold = start_hold(settings)
        self._desired: dict[str, Desired] = {}
        self._replicas: dict[str, Replica] = {}
        self._inprocess = InProcessReplicas(self.tables)
        self._runs: dict[str, DeploymentRun] = {}
        self._stable_runs: dict[str, DeploymentRun] = {}  # a rollout's stable side: its own autoscaler
        self.rollouts: RolloutSplits | None = None
        """The rollout controller (docs/rollouts.md): the splits every table carries; set by the server."""
        self.election: LeaderElection | None = None
        """The leader election (control/leader.py), set by the server: only its leader acts."""
        self._routed_splits: set[str] = set()
        self._wake = asyncio.Event()
        self._reload = True
        self._last_reload = 0.0
        self._dirty = False
        self._save_failing = False
        self._task: asyncio.Task[None] | None = None
        self._events = DeploymentEvents(registry)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._steps_begun = 0
        self._steps_done = 0
        self._stepped = asyncio.Event()
        self.metrics = ControlMetrics(self.replicas)  # replicas, restarts, scaling (docs/metrics.md)
        track_control(self.metrics)

    # -- ControlRuntime -------------------------------------------------------------------------------

    def replicas(self, deployment: str | None = None) -> list[dict[str, Any]]:
        rows = [
            r.status(self.tables.admitted_by(r.record.address))
            for r in list(self._replicas.values())
            if deployment is None or r.record.deployment == deployment
        ]
        for row in rows:
            row["restarts"] = self._runs.get(row["deployment"], DeploymentRun()).restarts
        return sorted(rows, key=lambda x: (x["deployment"], x["started_at"]))

    def replica_counts(self, deployment: str) -> dict[str, int]:
        mine = [r for r in list(self._replicas.values()) if r.record.deployment == deployment]
        desired = self._desired.get(deployment)
        virtual = self._inprocess.of(deployment)
        if desired is not None and desired.inprocess is not None:  # one copy in each gateway
            return {
                "revision": desired.revision,
                "desired": 1,
                "ready": sum(v.ready and v.template == desired.template for v in virtual),
                "total": len(mine) + len(virtual),
            }
        wanted = 0 if desired is None else self._count(desired, self._runs.get(deployment, DeploymentRun()))
        return {
            "revision": 0 if desired is None else desired.revision,
            "desired": wanted,
            "ready": sum(
                r.state == "ready" and desired is not None and r.record.template == desired.template
                for r in mine
            ),
            "total": len(mine) + len(virtual),
        }

    def may_act(self) -> bool:
        """Asked before every step: False while another control plane leads."""
        return self.election is None or self.election.is_leader

    def leadership(self) -> dict[str, Any] | None:
        return None if self.election is None else self.election.status()

    def routed(self) -> bool:
        return bool(self.tables.live_reports()) and self.tables.acknowledged(self.tables.generation)

    def problem(self, deployment: str) -> str | None:
        return self._loader.problems.get(deployment)

    def rollout(self, deployment: str) -> dict[str, Any] | None:
        return None if self.rollouts is None else self.rollouts.summary(deployment)

    def gateways(self) -> list[dict[str, Any]]:
        return self.tables.gateways()

    def routing(self) -> dict[str, Any]:
        return self.tables.table()

    def watch(self) -> AsyncIterator[dict[str, Any]]:
        return self.tables.watch()

    def report(self, report: dict[str, Any]) -> None:
        self.tables.report(report)
        if any(route.get("held") for route in report.get("routes", ())):
            # A request waits for a replica: scale from zero now, not at the next tick. A wake, not a reload:
            # the load comes from this report, and reports arrive up to 20 times a second during a start.
            self._wake_soon()

    def _wake_soon(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def tokens_changed(self, records: list[TokenRecord]) -> None:
        self.tables.publish_tokens(records)

    def changed(self, deployment: str | None = None) -> None:
        self._reload = True
        self._wake_soon()
        if self.rollouts is not None:  # a rollout may have started, moved or ended with this change
            self.rollouts.changed()

    async def settle(self, timeout_s: float) -> bool:
        after = self._steps_begun + 1  # a step under way may have read the registry before the change
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._steps_done < after:
                    await self._stepped.wait()
                while not self.tables.acknowledged(self.tables.generation):
                    await asyncio.sleep(0.02)  # gateways report as soon as they applied a table
                return True
        return False

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt the replicas a previous control plane left running, converge once, then keep going."""
        self._loop = asyncio.get_running_loop()
        self._keepalive()
        await self._adopt()
        self._events.start()
        if self.may_act():
            await self._step()
        self._task = self._loop.create_task(self._run())

    async def stop(self, *, stop_replicas: bool) -> None:
        """Stop reconciling; with ``stop_replicas`` drain and stop every replica, else leave them serving."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for r in self._replicas.values():
            if r.probing is not None:
                r.probing.cancel()
        if stop_replicas:
            self.tables.publish([])
            records = [r.record for r in self._replicas.values()]
            await asyncio.gather(  # side by side: each target drains its own
                *(
                    t.stop_all([r for r in records if r.target == t.kind], self.drain_timeout_s)
                    for t in self.targets.made()
                )
            )
            self._replicas.clear()
            try:
                self.state.save([])
            except errors.DiskFull as exc:
                # Harmless: every recorded replica is stopped, and the next control plane skips dead ones.
                log.warning("%s; it still lists the replicas just stopped", exc.message)
            for t in self.targets.made():
                t.release()
        else:
            self._save()
        await self._events.flush()

    # -- the loop -------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns the wake when a cancellation arrives as
            # the event is set, and the loop ran on forever: stop() never returned and `conveyor up`'s control
            # plane outlived SIGTERM, restarting replicas (seen under load in the e2e suite).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._wake.wait()
            self._wake.clear()
            self._steps_begun += 1
            try:
                if self.may_act():  # a follower neither starts nor stops anything, nor keeps replicas owned
                    self._keepalive()
                    await self._step()
            except Exception:  # the loop must outlive any one failure (a registry hiccup, a bug)
                log.exception("reconcile step failed")
            self._steps_done += 1
            stepped, self._stepped = self._stepped, asyncio.Event()
            stepped.set()

    async def _step(self) -> None:
        now = time.monotonic()
        if self._reload or now - self._last_reload >= RELOAD_S:
            self._reload = False
            self._last_reload = now
            await self._load_desired()
        await self._check_processes()
        for desired in self._desired.values():
            self._converge(desired, time.monotonic())
        for r in list(self._replicas.values()):
            if r.record.deployment not in self._desired and r.state in ("starting", "ready"):
                self._drain(r, "deployment deleted")
        self._inprocess.retire_deleted(set(self._desired))
        self._publish()
        self._stop_drained()
        if self._dirty:
            self._save()

    async def _load_desired(self) -> None:
        before = dict(self._loader.problems)
        desired = await asyncio.to_thread(self._loader.load, dict(self._desired))
        for name, problem in self._loader.problems.items():
            if before.get(name) != problem:
                keeps = " (keeping what runs)" if name in self._desired else ""
                log.warning("deployment %s cannot run: %s%s", name, problem, keeps)
                self._event(name, "InvalidDeployment", problem + keeps)
            if name in self._desired:  # the last revision that could run keeps running
                desired[name] = self._desired[name]
        self._desired = desired
        for name in list(self._runs):
            if name not in self._desired and name not in self._loader.problems:
                self._runs.pop(name)

    async def _check_processes(self) -> None:
        now = time.monotonic()
        for r in list(self._replicas.values()):
            if not self._target(r.record).alive(r.record):
                self._exited(r, now)
        for r in list(self._replicas.values()):
            if r.killed or r.state not in ("starting", "ready"):
                continue
            if not r.record.address and (address := self._target(r.record).endpoint(r.record)):
                r.record.address, self._dirty = address, True  # started elsewhere: known once it runs
            task = r.probing
            if task is not None and task.done():
                r.probing = None
                self._probed(r, not task.cancelled() and task.result(), now)
            due = r.state == "starting" or now - r.last_probe >= READY_PROBE_S
            if r.probing is None and not r.killed and due and r.record.address:
                r.last_probe = now
                r.probing = asyncio.get_running_loop().create_task(probe(r.record.address))
                r.probing.add_done_callback(lambda _: self._wake.set())
            late = now - r.since > self.settings.replica_start_timeout_s
            if r.state == "starting" and not r.killed and late:
                self._kill(
                    r,
                    "ReplicaFailed",
                    f"replica {r.record.id} not ready "
                    f"within {self.settings.replica_start_timeout_s:g}s: killing it",
                )

    def _probed(self, r: Replica, passed: bool, now: float) -> None:
        if r.state == "starting" and passed:
            r.state, r.since = "ready", now
            log.info("replica %s ready", r.record.id)
        elif r.state == "ready":
            r.failures = 0 if passed else r.failures + 1
            if r.failures >= UNHEALTHY_AFTER:
                why = f"replica {r.record.id} failed {r.failures} health probes in a row: replacing it"
                self._kill(r, "ReplicaUnhealthy", why)

    def _kill(self, r: Replica, kind: str, message: str) -> None:
        """End a replica that does not work now, with one event; its exit is noticed at the next step."""
        r.killed = True
        self._event(r.record.deployment, kind, message)
        self._target(r.record).stop(r.record, drain=False)

    def _exited(self, r: Replica, now: float) -> None:
        self._replicas.pop(r.record.id, None)
        if r.probing is not None:
            r.probing.cancel()
        self._dirty = True
        target = self._target(r.record)
        code = target.exit_code(r.record)
        target.forget(r.record)
        if r.state in ("draining", "stopping"):
            log.info("replica %s stopped", r.record.id)
            return
        run = self._runs.setdefault(r.record.deployment, DeploymentRun())
        desired = self._desired.get(r.record.deployment)
        if (
            desired is not None
            and desired.stable is not None
            and desired.stable.template == r.record.template
        ):
            run = self._stable_runs.setdefault(
                r.record.deployment, DeploymentRun()
            )  # a rollout's stable side
        run.streak = self.backoff.next_streak(run.streak, time.time() - r.record.started_at)
        delay = self.backoff.delay(run.streak)
        run.next_start = now + delay
        run.restarts += 1
        self.metrics.restarted(r.record.deployment, r.record.version)
        how = "was killed" if code is None or code < 0 else f"exited with code {code}"
        tail = target.log_tail(r.record)
        if code == EXIT_DATA_LOSS:  # it refused bytes that are not its version's: a restart loads them again
            self._artifact_corrupt(r.record)
            return
        self._event(
            r.record.deployment,
            "ReplicaFailed",
            f"replica {r.record.id} (pid {r.record.pid}) {how} while {r.state}; replacing it in {delay:.1f}s"
            + (f"; log: {tail}" if tail else ""),
        )

    def _artifact_corrupt(self, record: ReplicaRecord) -> None:
        why = self._target(record).log_tail(record, lines=1).removeprefix("error: ")
        self._loader.replica_refused(record.template, why)
        self._reload = True  # the deployment's problem says so at the next step
        self._event(
            record.deployment,
            "ArtifactCorrupt",
            f"replica {record.id} (pid {record.pid}) refused to load model {record.model}:{record.version}: "
            f"{why}; no replica of it starts until the artifact is intact; the running ones keep serving",
        )

    def _converge(self, d: Desired, now: float) -> None:
        run = self._runs.setdefault(d.name, DeploymentRun())
        mine = [r for r in self._replicas.values() if r.record.deployment == d.name]
        live = [r for r in mine if r.state in ("starting", "ready")]
        if d.inprocess is not None:
            self._converge_inprocess(d, live)
            return
        current = [r for r in live if r.record.template == d.template]
        stable = d.stable.template if d.stable is not None else None
        old = [r for r in live if r.record.template not in (d.template, stable)]
        want = self._scale(d, run, current, now)
        if d.stable is not None:  # a rollout: the stable revision's replicas run beside the candidate's
            sides = self._stable_runs.setdefault(d.name, DeploymentRun())
            self._scale(d.stable, sides, [r for r in live if r.record.template == stable], now)
        else:
            self._stable_runs.pop(d.name, None)
        ready = [r for r in current if r.state == "ready"]
        if old and len(ready) >= want:
            for r in old:
                self._drain(r, f"replaced by revision {d.revision}")
        if len(ready) >= want:  # a previous revision ran in the gateways: its copies go once these serve
            self._inprocess.retire(d.name)

    def _scale(self, d: Desired, run: DeploymentRun, current: list[Replica], now: float) -> int:
        """Start the replicas of ``d``'s template that ``current`` lacks, drain extras; the count wanted."""
        self._autoscale(d, run, current, now)
        want = self._count(d, run)
        if len(current) < want and now >= run.next_start and not self._loader.blocked(d):
            for _ in range(want - len(current)):
                if not self._start(d, run):
                    break
        elif len(current) > want:
            # Starting ones first, then the newest ready ones: the longest-running keep their warm caches.
            extras = sorted(current, key=lambda r: (r.state == "ready", -r.record.started_at))
            for r in extras[: len(current) - want]:
                self._drain(r, f"scaled to {want}")
        return want

    def _converge_inprocess(self, d: Desired, processes: list[Replica]) -> None:
        """Placement inprocess: list its virtual replica; once every gateway admitted it, the replicas of
        other revisions (in-process or processes) leave the table, as old replicas do in a rolling update."""
        replica = self._inprocess.want(d)
        for problem in self._inprocess.new_problems(replica):
            why = f"in-process replica {replica.spec.id} not loaded: {problem}"
            self._event(d.name, "ReplicaFailed", why)
        if replica.ready:
            self._inprocess.retire(d.name, keep=replica)
            for r in processes:
                self._drain(r, f"replaced by revision {d.revision} (in-process)")

    def _count(self, d: Desired, run: DeploymentRun) -> int:
        if d.replicas is not None:
            return d.replicas
        assert d.policy is not None
        if run.target is None:
            return max(d.policy.min_replicas, 1)
        return run.target

    def _autoscale(self, d: Desired, run: DeploymentRun, current: list[Replica], now: float) -> None:
        if d.policy is None:
            run.target, run.scaler = None, None
            return
        if run.scaler is None or run.scaler_template != d.template:
            run.scaler, run.scaler_template = AutoscalerState.for_policy(d.policy), d.template
            run.target = run.target if run.target is not None else max(d.policy.min_replicas, 1)
        count = self._count(d, run)
        load = self.tables.load(d.name, d.version)
        # Requests held at zero, or while the replicas started from zero are not ready: sample now.
        held = load is not None and load > 0 and (count == 0 or run.scaler.from_zero)
        if now - run.last_sample < SCALE_SAMPLE_S and not held:
            return
        run.last_sample = now
        if load is not None:
            ready = sum(r.state == "ready" for r in current)
            run.scaler = observe(run.scaler, now, load, ready)
        decision = decide(d.policy, run.scaler, now, count)
        run.scaler = decision.state
        if decision.desired != count:
            kind = "ScaledUp" if decision.desired > count else "ScaledDown"
            self._event(d.name, kind, f"{count} -> {decision.desired}: {decision.reason}")
            self.metrics.scaled(d.name, up=decision.desired > count)
            run.target = decision.desired

    def _start(self, d: Desired, run: DeploymentRun) -> bool:
        # On a GPU: pinned to the one the fewest of this control plane's replicas hold (docs/gpu.md).
        held = [r.record.details.get("gpu", "") for r in self._replicas.values()]
        env = d.device_env(held, self.settings.cuda_visible_devices)
        launch = Launch(
            d.name, d.revision, d.template, d.model, d.version, d.model_file, d.sha256, d.options, env
        )
        try:
            record = self.targets.get(d.target).create(launch)
        except errors.ConveyorError as exc:  # a target that cannot take it now (a cluster away): retried
            run.streak += 1
            run.next_start = time.monotonic() + self.backoff.delay(run.streak)
            self._event(d.name, "ReplicaFailed", f"no replica started on target {d.target}: {exc.message}")
            return False
        record.target = d.target
        record.details.update(d.replica_details(env))  # its provider and GPU: describe, and the count above
        self._replicas[record.id] = Replica(record)
        self._dirty = True
        return True

    def _drain(self, r: Replica, why: str) -> None:
        log.info("draining replica %s: %s", r.record.id, why)
        if r.state == "starting":  # never routed to: stop it at once
            self._target(r.record).stop(r.record, drain=True)
            r.state, r.since = "stopping", time.monotonic()
            return
        r.state, r.since, r.drain_generation = "draining", time.monotonic(), None

    def publish_now(self) -> None:
        """A table with the rollout controller's splits as they are now (a rollback: within milliseconds)."""
        self._publish()

    def split_routed(self, deployment: str) -> bool:
        """The last table carried ``deployment``'s split: both of its versions have a ready replica."""
        return deployment in self._routed_splits

    def _publish(self) -> None:
        deployments = [(d.name, d.revision, d.version, d.hold) for d in self._desired.values()]
        stable = {d.name: d.stable.version for d in self._desired.values() if d.stable is not None}
        ready = [
            (r.record.deployment, r.record.version, r.record.revision, r.record.id, r.record.address)
            for r in self._replicas.values()
            if r.state == "ready"
        ]
        starting = [
            (r.record.deployment, r.record.version)
            for r in self._replicas.values()
            if r.state == "starting" and not r.killed
        ]
        virtual = self._inprocess.routes()
        public = {d.name for d in self._desired.values() if d.public}
        routes = build_routes(deployments, ready, starting, self._start_hold, virtual, public, stable)
        serving = {(r.name, r.version) for r in routes if r.replicas}
        splits = [
            s
            for s in (self.rollouts.splits() if self.rollouts is not None else [])
            if (s.name, s.stable) in serving and (s.name, s.candidate) in serving
        ]
        self._routed_splits = {s.name for s in splits}
        self.tables.publish(routes, splits)
        for r in self._replicas.values():
            if r.state == "draining" and r.drain_generation is None:
                r.drain_generation = self.tables.generation

    def _stop_drained(self) -> None:
        now = time.monotonic()
        for r in self._replicas.values():
            if r.state == "draining" and r.drain_generation is not None:
                waited = now - max(r.since, self.tables.known_since)
                if self.tables.acknowledged(r.drain_generation) or waited > ACK_TIMEOUT_S:
                    self._target(r.record).stop(r.record, drain=True)  # finishes in-flight work, then exits
                    r.state, r.since = "stopping", now
            elif r.state == "stopping" and now - r.since > self.drain_timeout_s:
                log.warning(
                    "replica %s did not stop within %.0fs: killing it", r.record.id, self.drain_timeout_s
                )
                self._target(r.record).stop(r.record, drain=False)

    # -- targets, adoption, state file, events --------------------------------------------------------

    def _target(self, record: ReplicaRecord) -> Target:
        return self.targets.get(record.target)

    def _keepalive(self) -> None:
        for target in self.targets.made():
            target.keepalive()

    async def _adopt(self) -> None:
        for record in self.state.load():
            try:
                target = self._target(record)
            except errors.ConveyorError as exc:  # a target this control plane lacks: not ours to keep
                log.warning("not adopting replica %s: %s", record.id, exc)
                continue
            target.keepalive()  # its replicas must not stop while the others are probed
            if not target.adopt(record):
                target.forget(record)
                continue
            ok = False
            for _ in range(3):
                if await probe(record.address):
                    ok = True
                    break
                await asyncio.sleep(0.2)
            if ok:
                self._replicas[record.id] = Replica(record, state="ready", last_probe=time.monotonic())
                log.info("adopted replica %s (pid %d)", record.id, record.pid)
            else:
                log.warning("replica %s (pid %d) does not answer: killing it", record.id, record.pid)
                target.stop(record, drain=False)
                target.forget(record)
        if self._replicas:  # gateways may route to them: learn which gateways live before stopping any
            self.tables.gateways_unknown()
        self._save()

    def _save(self) -> None:
        try:
            self.state.save([r.record for r in self._replicas.values()])
        except errors.DiskFull as exc:  # kept dirty: retried at every step until space is freed
            if not self._save_failing:
                self._save_failing = True
                log.warning(
                    "%s; until it is freed, a restarted control plane would not adopt new replicas", exc
                )
            return
        if self._save_failing:
            self._save_failing = False
            log.warning("replica state saved again: %s", self.state.path)
        self._dirty = False

    def _event(self, deployment: str, kind: str, message: str) -> None:
        self._events.add(deployment, kind, message)
