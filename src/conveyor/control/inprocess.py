"""In-process replicas (placement inprocess): virtual replicas the control plane lists in the routing table
and every gateway loads into its own process.

Nothing runs here, so nothing is started, probed or stopped: one is listed as soon as it is desired, is ready
once every live gateway reports it admitted (each admits it when its own load finished), and is retired by
leaving the table (each gateway closes it once its in-flight requests are answered).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from conveyor.control.desired import Desired
from conveyor.control.publisher import RoutingState
from conveyor.protocol.table import INPROCESS, ReplicaSpec

log = logging.getLogger("conveyor.control")


@dataclass(eq=False, slots=True)
class VirtualReplica:
    deployment: str
    revision: int
    version: str
    template: str
    spec: ReplicaSpec
    ready: bool = False
    since: float = field(default_factory=time.monotonic)
    reported: set[str] = field(default_factory=set)
    """Load failures already recorded as events."""


class InProcessReplicas:
    """The virtual replicas of every in-process deployment, by address (one per deployment template)."""

    def __init__(self, tables: RoutingState) -> None:
        self._tables = tables
        self._replicas: dict[str, VirtualReplica] = {}

    def want(self, d: Desired) -> VirtualReplica:
        """The replica of ``d``'s template, listed from now on (created not ready)."""
        assert d.inprocess is not None
        address = f"{INPROCESS}{d.name}/{d.version}/{d.template}"
        replica = self._replicas.get(address)
        if replica is None:
            rid = f"{d.name}-{d.template[:6]}-inprocess"
            spec = ReplicaSpec(rid, address, d.inprocess)
            replica = VirtualReplica(d.name, d.revision, d.version, d.template, spec)
            self._replicas[address] = replica
            log.info("in-process replica %s listed: gateways load %s", rid, d.inprocess.model_file)
        if not replica.ready and self._admitted_everywhere(address):
            replica.ready, replica.since = True, time.monotonic()
            log.info("in-process replica %s ready: every live gateway admitted it", replica.spec.id)
        return replica

    def _admitted_everywhere(self, address: str) -> bool:
        # No gateway, no load: a deployment nobody serves is not ready (as a replica that never answers).
        live = len(self._tables.live_reports())
        return live > 0 and self._tables.admitted_by(address) == live

    def new_problems(self, replica: VirtualReplica) -> list[str]:
        """Load failures gateways reported for ``replica`` that were not returned before."""
        fresh = sorted(self._tables.problems(replica.spec.address) - replica.reported)
        replica.reported.update(fresh)
        return fresh

    def of(self, deployment: str) -> list[VirtualReplica]:
        return [r for r in self._replicas.values() if r.deployment == deployment]

    def retire(self, deployment: str, keep: VirtualReplica | None = None) -> None:
        """Drop ``deployment``'s replicas but ``keep``: the next table no longer lists them."""
        for address, replica in list(self._replicas.items()):
            if replica.deployment == deployment and replica is not keep:
                log.info("in-process replica %s retired", replica.spec.id)
                del self._replicas[address]

    def retire_deleted(self, deployments: set[str]) -> None:
        for name in {r.deployment for r in self._replicas.values()} - deployments:
            self.retire(name)

    def routes(self) -> list[tuple[str, str, int, ReplicaSpec, bool]]:
        """``build_routes``' in-process entries."""
        return [(r.deployment, r.version, r.revision, r.spec, r.ready) for r in self._replicas.values()]
