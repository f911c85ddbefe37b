"""The gateway: one entry point implementing InferenceService over replicas, wherever they run.

Routes by model version, balances with power of two choices, retries once on another replica when a connection
failed before an answer or its replica stopped answering pings (inference is idempotent), ejects failing or
hung replicas and probes them back in. The table
is fixed (``conveyor serve``) or replaced whole by the control plane's (``apply_table``); a scale-to-zero
route with no replica holds requests until one is admitted. A name in a rollout divides its bare requests
between two versions (gateway/split.py), and may send some to both and compare the answers
(gateway/shadow.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from conveyor.errors import ConveyorError, InvalidInput, NotFound, Overloaded, Unavailable
from conveyor.gateway.auth import GatewayAuth
from conveyor.gateway.balance import power_of_two
from conveyor.gateway.channel import ChannelUpstream
from conveyor.gateway.hold import HeldRequests
from conveyor.gateway.outlier import OutlierState, is_replica_fault
from conveyor.gateway.replica import Replica, inflight_of
from conveyor.gateway.shadow import Answer, SecondSends
from conveyor.gateway.split import Split
from conveyor.gateway.table import Route, RoutingTable
from conveyor.gateway.upstream import ConnectionFailed, ReplicaUnresponsive, Upstream
from conveyor.observe.collectors import track_gateway
from conveyor.protocol.service import EncodedRequest, EncodedResponse, server_metadata
from conveyor.protocol.table import SCALED_TO_ZERO, STARTING, ReplicaSpec, parse_table

log = logging.getLogger("conveyor.gateway")
LoadInProcess = Callable[[ReplicaSpec, Callable[[], None]], Upstream]
"""Builds the upstream of an in-process replica from its table entry; it calls the callable once loaded."""
READY_WHEN_ALL = "all"
READY_WHEN_ANY = "any"
READY_WHEN = (READY_WHEN_ALL, READY_WHEN_ANY)
_HOLD_WHY = {STARTING: "its replicas are starting", SCALED_TO_ZERO: "scaled to zero"}


class Gateway:
    def __init__(
        self,
        table: RoutingTable | None = None,
        *,
        health_interval_s: float = 1.0,
        rng: random.Random | None = None,
        connect: Callable[[str], Upstream] = ChannelUpstream,
        eject_after: int = 3,
        ready_when: str = READY_WHEN_ALL,
        load_inprocess: LoadInProcess | None = None,
        auth: GatewayAuth | None = None,
        second_send_timeout_s: float | None = None,
    ) -> None:
        """A fixed ``table``, or None: empty (not ready) until the control plane's first ``apply_table``,
        whose new replicas are reached through ``connect(address)``, or loaded in this process by
        ``load_inprocess`` (injected: the gateway package never imports the server's). ``ready_when``: see
        ``ready``. ``auth``: who may call the models (None: anyone); a controlled gateway takes it from the
        control plane's table. ``second_send_timeout_s``: an outer deadline of mirrored and compared sends
        (the upstream's per-attempt deadline applies to them as to every request)."""
        if ready_when not in READY_WHEN:
            raise ValueError(f"ready_when must be one of {', '.join(READY_WHEN)}, got {ready_when!r}")
        self.controlled = table is None
        self.ready_when = ready_when
        self.table = table if table is not None else RoutingTable([])
        routed = {id(r): r for route in self.table.routes for r in route.replicas}
        self.replicas: list[Replica] = list(routed.values())
        self.health_interval_s = health_interval_s
        self.held = HeldRequests()
        self.epoch: str | None = None
        self.generation: int | None = None
        """The applied (acknowledged) table's epoch and generation; None before the first."""
        self._connect = connect
        self._load_inprocess = load_inprocess
        self.on_admitted: Callable[[], None] | None = None
        """Called when a probe admitted a replica (the control plane client reports it at once)."""
        self._eject_after = eject_after
        self._retiring: dict[str, Replica] = {}  # out of the table, requests still in flight
        self._closing: set[asyncio.Task[None]] = set()
        self._rng = rng or random.Random()
        self._metadata: dict[tuple[str, str | None, int | None], dict[str, Any]] = {}
        self._health_task: asyncio.Task[None] | None = None
        self._stopped = False
        self.auth = auth
        self.second_sends = SecondSends(self._send_once, timeout_s=second_send_timeout_s)
        track_gateway(self)  # conveyor_held_requests

    # -- InferenceService --
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Server readiness (docs/serving.md): with ``ready_when`` "all" (Triton's strict readiness), every
        model the table routes can answer now; with "any", at least one can (or none is routed). A route can
        answer when it has an admitted replica; one without replicas counts when it is scaled to zero (its
        requests wait for a scale-up by design) or another version of its model can answer (a rollout).
        A version whose first replicas are starting, or that cannot start, is not ready."""
        if self.controlled and self.epoch is None:
            return False
        routes = self.table.routes
        serving = {route.name for route in routes if any(r.admitted for r in route.replicas)}
        if self.ready_when == READY_WHEN_ANY:
            return not routes or bool(serving) or any(_scaled_to_zero(route) for route in routes)
        return all(_route_ready(route, serving) for route in routes)

    def server_metadata(self) -> dict[str, Any]:
        return server_metadata()

    async def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        table = self.table
        route = table.resolve(name, version)
        key = (route.name, route.version, route.revision)
        meta = self._metadata.get(key)
        if meta is None:  # versions are immutable: ask a replica once
            meta = await self._pick(route, None).upstream.model_metadata(route.name, route.version)
            if self.table is table:  # a table that came meanwhile may no longer route this version
                self._metadata[key] = meta
        return {**meta, "versions": table.versions(route.name)}

    async def model_ready(self, name: str, version: str | None) -> dict[str, Any]:
        """V2 model readiness: a replica of the version is admitted (NotFound when none is routed)."""
        route = self.table.resolve(name, version)
        if self._choose(route, None) is not None:
            return {"name": name, "ready": True}
        why = _no_replica(route, None).message
        if route.hold is not None:
            why = f"no replica of {_label(route)} is ready yet ({_HOLD_WHY[route.hold.reason]})"
        return {"name": name, "ready": False, "error": why}

    def authorize(self, name: str, version: str | None, authorization: str | None) -> None:
        """Unauthenticated / PermissionDenied unless the caller's token may call the model (a public route
        needs none), Overloaded when the token is over its rate limit: asked with the request's head."""
        auth = self.auth
        if auth is None:
            return
        route = self.table.find(name, version)
        if route is not None and route.public:
            return
        auth.check(name, authorization)

    def admit(self, name: str, version: str | None) -> None:
        """Overloaded when every admitted replica of the version is full (it refused a request and none of
        its requests has ended since); a lone replica in this process is asked itself, which may make room.
        Nothing is forwarded to find out: the gateway sheds before the hop (docs/batching.md, "Overload")."""
        route = self.table.find(name, version)
        if route is None:
            return  # infer answers NotFound
        if _every_admitted_full(route):
            raise _overloaded(route)
        if len(route.replicas) == 1:  # conveyor serve's: which replica infer will choose is known
            route.replicas[0].upstream.admit(route.name, route.version)

    async def infer(self, request: EncodedRequest) -> EncodedResponse:
        route = self.table.resolve(request.model, request.version)
        if route.split is not None and request.version is None:  # an attribute read: no split, no cost
            return await self._infer_split(route.split, request)
        try:
            first = self._choose(route, None)
            if first is None:
                if _every_admitted_full(route):
                    raise _overloaded(route)
                route, first = await self._hold(route, request)
            try:
                response = await self._send(first, _for_route(route, request))
            except ConnectionFailed as exc:
                log.warning("request %s: %s; retrying on another replica", request.request_id, exc)
            else:
                route.warm = first
                return response
            with contextlib.suppress(NotFound):  # a table that came meanwhile knows better, if it routes it
                route = self.table.resolve(request.model, request.version)
            second = self._pick(route, first)
            response = await self._send(second, _for_route(route, request))
            route.warm = second
            return response
        except ConveyorError as exc:  # the metrics count the failure under the version it was routed to
            exc.details.setdefault("model_version", route.version)
            raise

    async def _infer_split(self, split: Split, request: EncodedRequest) -> EncodedResponse:
        """A bare-name request of a name in a rollout: answered by the version the split chooses (stable
        when the candidate has no replica that can take it now), perhaps also sent to the other one."""
        to_candidate = split.to_candidate(request.headers, self._rng)
        if to_candidate and split.candidate.hold is None and self._choose(split.candidate, None) is None:
            to_candidate = False
        route = split.candidate if to_candidate else split.stable
        other = split.second(to_candidate, self._rng)
        chosen = _for_route(route, request)  # a version now: a retry or a hold stays with it
        caller = None if other is None else self.second_sends.start(split, other, _for_route(other, request))
        if caller is None:
            return await self.infer(chosen)
        answer: Answer = asyncio.CancelledError()
        try:
            answer = await self.infer(chosen)
            return answer
        except Exception as exc:
            answer = exc
            raise
        finally:
            caller.set_result(answer)

    async def _send_once(self, route: Route, request: EncodedRequest) -> EncodedResponse:
        """A mirrored or compared send: one attempt on an admitted replica, never held or retried."""
        replica = self._choose(route, None)
        if replica is None:
            raise _no_replica(route, None)
        return await self._send(replica, request)

    def held_by_model(self) -> dict[str, int]:
        """Requests held now, by model (conveyor_held_requests)."""
        held: dict[str, int] = {}
        for (name, _), n in list(self.held.counts.items()):
            held[name] = held.get(name, 0) + n
        return held

    # -- internals --
    def _choose(self, route: Route, exclude: Replica | None) -> Replica | None:
        """The replica that answered last when it is idle, else power of two choices over the admitted.

        An idle replica is a least-loaded one, and the one that answered last is warm: its process is
        awake, its caches hold the model. At low load the requests stay on it (2 replicas, one request at
        a time: a tenth to a fifth more requests per second than alternating at random, docs/serving.md);
        as soon as it has a request in flight, the next one is balanced."""
        replicas = route.replicas
        if len(replicas) == 1:  # conveyor serve's one replica: nothing to choose between, no list, no random
            only = replicas[0]
            return only if only.health.admitted and not only.full and only is not exclude else None
        warm = route.warm
        if warm is not None and warm.inflight == 0 and warm.health.admitted and warm is not exclude:
            return warm  # idle, so not full
        ready = [r for r in replicas if r.health.admitted and not r.full and r is not exclude]
        return power_of_two(ready, inflight_of, self._rng) if ready else None

    def _pick(self, route: Route, exclude: Replica | None) -> Replica:
        chosen = self._choose(route, exclude)
        if chosen is None:
            if _every_admitted_full(route, exclude):
                raise _overloaded(route)
            raise _no_replica(route, exclude)
        return chosen

    async def _hold(self, route: Route, request: EncodedRequest) -> tuple[Route, Replica]:
        """Wait, if the route holds, for a table or an admission that brings a replica."""
        if route.hold is None:
            raise _no_replica(route, None)

        def check() -> tuple[Route, Replica] | None:
            current = self.table.resolve(request.model, request.version)
            chosen = self._choose(current, None)
            if chosen is None and current.hold is None:  # no longer held: answer now
                if route.hold is not None and route.hold.reason == STARTING:
                    raise Unavailable(
                        f"no replica of {_label(current)} is available: the ones starting stopped "
                        "(see the deployment's events)"
                    )
                raise _no_replica(current, None)
            return None if chosen is None else (current, chosen)

        return await self.held.wait((route.name, route.version), route.hold, _label(route), check)

    async def _send(self, replica: Replica, request: EncodedRequest) -> EncodedResponse:
        replica.inflight += 1
        try:
            response = await replica.upstream.infer(request)
        except Overloaded:
            # Full: nothing more goes to it until one of its requests ends (one that was in flight
            # before this refusal). With none in flight, whoever filled it is not us: try again next time.
            # One in this process answers admit() exactly instead.
            replica.full = replica.inflight > 1 and not replica.upstream.local
            raise
        except Exception as exc:
            replica.full = False
            if isinstance(exc, ReplicaUnresponsive):  # hung: every request sent to it now would wait too
                if replica.health.admitted:
                    log.warning("replica %s ejected: %s", replica.name, exc)
                replica.health.eject()
            elif is_replica_fault(exc) and replica.health.failure():
                log.warning("replica %s ejected after %d failures", replica.name, replica.health.failures)
            raise
        finally:
            replica.inflight -= 1
            if replica.retired and replica.inflight == 0:
                self._close(replica)
        replica.full = False
        replica.health.success()
        return response

    # -- the control plane's table --
    def apply_table(self, doc: Any) -> None:
        """Replace the table with the control plane's ``doc`` (docs/control-plane.md) in one step.

        Replicas are matched by address and keep their connections, in-flight counts and health; new ones
        start admitted (the control plane lists only replicas it saw ready); removed ones finish what they
        have in flight, then close. A malformed table raises InvalidInput and changes nothing; an older
        generation of the applied epoch is ignored.
        """
        snap = parse_table(doc)
        if self._stopped:
            return
        if snap.epoch == self.epoch and self.generation is not None and snap.generation < self.generation:
            log.warning("ignoring table %s/%d: %d is applied", snap.epoch, snap.generation, self.generation)
            return
        current = {r.upstream.address: r for r in self.replicas}
        members: dict[str, Replica] = {}
        for spec in snap.routes:
            for rs in spec.replicas:
                if rs.address not in members:
                    found = current.get(rs.address) or self._retiring.get(rs.address)
                    members[rs.address] = found or self._new_replica(rs)
        routes = [
            Route(
                s.name,
                s.version,
                [members[r.address] for r in s.replicas],
                s.default,
                s.hold,
                s.revision,
                public=s.public,
            )
            for s in snap.routes
        ]
        table = RoutingTable(routes, splits=snap.splits)
        # Nothing below can fail: the table is applied whole or not at all.
        for address, replica in members.items():
            replica.retired = False
            self._retiring.pop(address, None)
        for address, replica in current.items():
            if address not in members:
                self._retire(replica)
        self.table, self.replicas = table, list(members.values())
        if snap.tokens is None:
            self.auth = None
        else:
            if self.auth is None:
                self.auth = GatewayAuth()
            self.auth.update(snap.tokens)
        self.epoch, self.generation = snap.epoch, snap.generation
        routed = {(r.name, r.version, r.revision) for r in routes}
        self._metadata = {k: v for k, v in self._metadata.items() if k in routed}
        self.held.wake()

    def _new_replica(self, spec: ReplicaSpec) -> Replica:
        if spec.inprocess is None:  # the control plane lists a replica process once it saw it ready
            health = OutlierState(self._eject_after, admitted=True)
            return Replica(self._connect(spec.address), health, name=spec.id)
        if self._load_inprocess is None:
            raise InvalidInput(
                f"routing table: replica {spec.id} runs in-process, and this gateway cannot load models"
            )
        # Loaded here, from now: admitted by the health check once its probe passes.
        upstream = self._load_inprocess(spec, self._loaded)
        return Replica(upstream, OutlierState(self._eject_after, admitted=False), name=spec.id)

    def _loaded(self) -> None:
        """An in-process replica finished loading: probe now rather than at the next health tick."""
        task = asyncio.get_running_loop().create_task(self.check_health())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _retire(self, replica: Replica) -> None:
        replica.retired = True
        if replica.inflight == 0:
            self._close(replica)
        else:
            self._retiring[replica.upstream.address] = replica

    def _close(self, replica: Replica) -> None:
        self._retiring.pop(replica.upstream.address, None)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside a loop no connection was ever opened
            return
        task = loop.create_task(replica.upstream.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- health --
    async def check_health(self) -> None:
        """Probe every replica once (concurrently) and admit or eject accordingly."""
        replicas = self.replicas
        results = await asyncio.gather(*(r.upstream.probe() for r in replicas))
        admitted = False
        for replica, passed in zip(replicas, results, strict=True):
            was = replica.health.admitted
            if replica.health.probe(passed):
                log.info("replica %s admitted", replica.name)
                admitted = True
            elif was and not replica.health.admitted:
                log.warning("replica %s ejected: health probes failing", replica.name)
        if admitted:
            self.held.wake()
            if self.on_admitted is not None:
                self.on_admitted()

    def eject(self, address: str) -> None:
        """Take a replica out of rotation at once (its process is known to have exited)."""
        for r in self.replicas:
            if r.upstream.address == address:
                r.health.eject()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            try:
                await self.check_health()
            except Exception:  # the loop must outlive any one bad probe
                log.exception("health check failed")

    async def start(self) -> None:
        await self.check_health()
        self._health_task = asyncio.get_running_loop().create_task(self._health_loop())

    async def stop(self) -> None:
        self._stopped = True  # a table arriving from now on is not applied
        await self.second_sends.stop()
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        for r in [*self.replicas, *self._retiring.values()]:
            await r.upstream.close()
        self._retiring.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def wait_ready(self, timeout_s: float) -> bool:
        """Probe until every model version has an admitted replica or ``timeout_s`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.ready() and loop.time() < deadline:
            await asyncio.sleep(0.05)
            await self.check_health()
        return self.ready()


def _scaled_to_zero(route: Route) -> bool:
    return not route.replicas and route.hold is not None and route.hold.reason == SCALED_TO_ZERO


def _route_ready(route: Route, serving: set[str]) -> bool:
    if any(r.admitted for r in route.replicas):
        return True
    return not route.replicas and (_scaled_to_zero(route) or route.name in serving)


def _label(route: Route) -> str:
    return route.name + (f":{route.version}" if route.version else "")


def _every_admitted_full(route: Route, excluded: Replica | None = None) -> bool:
    """Some replica of the route is admitted, and every admitted one (but ``excluded``) is full."""
    admitted = False
    for r in route.replicas:  # asked per request from the head: no list
        if r.health.admitted and r is not excluded:
            if not r.full:
                return False
            admitted = True
    return admitted


def _overloaded(route: Route) -> Overloaded:
    return Overloaded(f"every replica of {_label(route)} has a full queue; retry later")


def _no_replica(route: Route, excluded: Replica | None) -> Unavailable:
    extra = "other " if excluded is not None else ""
    return Unavailable(f"no {extra}healthy replica of {_label(route)} is available")


def _for_route(route: Route, request: EncodedRequest) -> EncodedRequest:
    """Replicas see the real version, never the default's absence or an alias."""
    if request.version == route.version:
        return request
    return EncodedRequest(
        route.name, route.version, request.body, request.json_length, request.request_id, request.traceparent
    )
