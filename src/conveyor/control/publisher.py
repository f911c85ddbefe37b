"""The routing table the control plane pushes to gateways, and what gateways report back.

``RoutingState`` keeps the current table (``epoch`` + ``generation``, routes as ``conveyor.protocol.table``
types), wakes every watcher when it changes, and remembers each gateway's last load report: the acknowledged
table and in-flight requests per version.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from typing import Any

from conveyor.protocol.table import Hold, ReplicaSpec, RouteSpec, SplitSpec, TableSnapshot
from conveyor.security.tokens import TokenRecord
from conveyor.versions import version_order

GATEWAY_LIVE_S = 3.0
"""A gateway that has not reported for this long is not waited for (acks) nor counted (load)."""
REPORT_GRACE_S = GATEWAY_LIVE_S
"""After a restart that found replicas running, how long the set of live gateways is unknown: every live
gateway posts a report every 0.5 s (a failed post is retried at the next tick), so by then each has."""


class RoutingState:
    def __init__(self) -> None:
        self.epoch = secrets.token_hex(4)
        self.generation = 0
        self._routes: tuple[RouteSpec, ...] = ()
        self._splits: tuple[SplitSpec, ...] = ()
        self._tokens: tuple[TokenRecord, ...] = ()
        self._changed = asyncio.Event()
        self._reports: dict[str, tuple[float, dict[str, Any]]] = {}
        self._unknown_until = 0.0

    # -- the table ------------------------------------------------------------------------------------

    def table(self) -> dict[str, Any]:
        """The current table as sent to gateways."""
        return TableSnapshot(self.epoch, self.generation, self._routes, self._tokens, self._splits).to_doc()

    def publish(self, routes: Iterable[RouteSpec], splits: Iterable[SplitSpec] = ()) -> bool:
        """Make ``routes`` (and the rollouts' ``splits`` over them) current; True (and watchers woken) when
        they differ from the current ones."""
        new, new_splits = tuple(routes), tuple(splits)
        if new == self._routes and new_splits == self._splits:
            return False
        self._routes, self._splits = new, new_splits
        self._next()
        return True

    def publish_tokens(self, records: Iterable[TokenRecord]) -> bool:
        """Make ``records`` the tokens gateways check (a new generation when they changed): a revoked token
        is refused by every gateway as soon as it applies the table."""
        new = tuple(records)
        if new == self._tokens:
            return False
        self._tokens = new
        self._next()
        return True

    def _next(self) -> None:
        self.generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def watch(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            changed = self._changed
            yield self.table()
            await changed.wait()

    # -- gateways -------------------------------------------------------------------------------------

    def report(self, report: dict[str, Any]) -> None:
        self._reports[str(report["gateway"])] = (time.monotonic(), report)

    def live_reports(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        for gid, (at, _) in list(self._reports.items()):
            if now - at > 10 * GATEWAY_LIVE_S:
                self._reports.pop(gid, None)
        return [r for at, r in list(self._reports.values()) if now - at <= GATEWAY_LIVE_S]

    def gateways_unknown(self, for_s: float = REPORT_GRACE_S) -> None:
        """A restarted control plane does not know which gateways are live until each has reported: until
        then no table counts as acknowledged (``all()`` over no reports would say yes, and the old replicas
        of a rollout would be stopped while every gateway still routes to them)."""
        self._unknown_until = time.monotonic() + for_s

    @property
    def known_since(self) -> float:
        """When the set of live gateways became known (the monotonic clock); ack timeouts count from here."""
        return self._unknown_until

    def acknowledged(self, generation: int) -> bool:
        """Every live gateway applied this epoch's table ``generation`` or a later one (never while the set
        of live gateways is unknown, after a restart)."""
        if time.monotonic() < self._unknown_until:
            return False
        return all(
            r.get("epoch") == self.epoch and int(r.get("generation", 0)) >= generation
            for r in self.live_reports()
        )

    def load(self, name: str, version: str) -> float | None:
        """In-flight plus held requests for ``name:version`` over live gateways; None without a report."""
        reports = self.live_reports()
        if not reports:
            return None
        total = 0.0
        for r in reports:
            for route in r.get("routes", ()):
                if route.get("name") == name and str(route.get("version")) == version:
                    total += float(route.get("inFlight", 0)) + float(route.get("held", 0))
        return total

    def admitted_by(self, address: str) -> int:
        """How many live gateways admit the replica at ``address``."""
        count = 0
        for r in self.live_reports():
            for route in r.get("routes", ()):
                if any(x.get("address") == address and x.get("admitted") for x in route.get("replicas", ())):
                    count += 1
                    break
        return count

    def problems(self, address: str) -> set[str]:
        """Why live gateways could not load the in-process replica at ``address`` (empty: none failed)."""
        found = set()
        for r in self.live_reports():
            for route in r.get("routes", ()):
                for x in route.get("replicas", ()):
                    if x.get("address") == address and isinstance(x.get("problem"), str):
                        found.add(f"gateway {r.get('gateway')}: {x['problem']}")
        return found

    def gateways(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                "id": r["gateway"],
                "url": r.get("url"),
                "grpcUrl": r.get("grpcUrl"),
                "lastSeenSecondsAgo": round(now - at, 2),
                "epoch": r.get("epoch"),
                "generation": r.get("generation"),
            }
            for at, r in list(self._reports.values())
            if now - at <= GATEWAY_LIVE_S
        ]


def build_routes(
    deployments: Iterable[tuple[str, int, str, Hold | None]],
    ready: Iterable[tuple[str, str, int, str, str]],
    starting: Iterable[tuple[str, str]] = (),
    start_hold: Hold | None = None,
    inprocess: Iterable[tuple[str, str, int, ReplicaSpec, bool]] = (),
    public: Collection[str] = (),
    stable: Mapping[str, str] | None = None,
) -> list[RouteSpec]:
    """Routes from desired deployments ``(name, revision, version, hold)``, ready replicas
    ``(deployment, version, revision, id, address)``, the ``(deployment, version)`` of starting ones, and
    in-process replicas ``(deployment, version, revision, spec, ready)``.

    The current version of a deployment always has a route (empty: 503, or held with scale to zero) and is the
    default while it has a ready replica; during a rollout whose new replicas are not ready yet, the old
    version with ready replicas stays the default, so a bare name never answers 503 mid-update. A version
    with no ready replica but one starting holds its requests with ``start_hold`` (a new deployment answers
    its first requests once a replica is ready instead of refusing them); one that is not starting any more
    (crashed, in its restart backoff, blocked) holds nothing, so a version that cannot start never holds.

    An in-process replica is listed from the start, ready or not: each gateway loads it when it first sees
    it and admits it once loaded. Until every gateway has (``ready``) its version is not the default, and a
    version with only such replicas holds its requests with ``start_hold``, for a gateway that is loading it.

    The routes of the deployments named in ``public`` need no token.

    ``stable``: deployment → the stable version of its rollout (docs/rollouts.md), the default while it has
    a ready replica (the candidate, the deployment's current version, gets what the rollout's split gives).
    """
    by_version: dict[tuple[str, str], list[tuple[int, ReplicaSpec]]] = {}
    for deployment, version, revision, rid, address in ready:
        by_version.setdefault((deployment, version), []).append((revision, ReplicaSpec(rid, address)))
    loading: dict[tuple[str, str], list[tuple[int, ReplicaSpec]]] = {}
    for deployment, version, revision, spec, is_ready in inprocess:
        (by_version if is_ready else loading).setdefault((deployment, version), []).append((revision, spec))
    coming = set(starting)
    routes: list[RouteSpec] = []
    for name, revision, version, hold in sorted(deployments):
        versions = {v for d, v in (*by_version, *loading) if d == name} | {version}
        default = version
        kept = (stable or {}).get(name)
        if kept is not None and by_version.get((name, kept)):
            default = kept
        elif not by_version.get((name, version)):
            serving = [v for v in versions if by_version.get((name, v))]
            if serving:  # the newest revision among those still serving
                default = max(serving, key=lambda v: max(r for r, _ in by_version[(name, v)]))
        for v in sorted(versions, key=version_order):
            members = sorted(
                [*by_version.get((name, v), []), *loading.get((name, v), [])], key=lambda m: m[1].id
            )
            held = hold if v == version else None
            in_gateways = all(m.inprocess is not None for _, m in members)
            if held is None and (name, v) in coming and not members:
                held = start_hold
            elif held is None and members and in_gateways:
                held = start_hold  # held by a gateway that is still loading it (or reloading, restarted)
            routes.append(
                RouteSpec(
                    name=name,
                    version=v,
                    deployment=name,
                    revision=max((r for r, _ in members), default=revision),
                    default=v == default,
                    replicas=tuple(m for _, m in members),
                    hold=held,
                    public=name in public,
                )
            )
    return routes
