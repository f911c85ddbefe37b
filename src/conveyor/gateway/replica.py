"""A replica in the gateway's routing table: its upstream, its outlier state and its in-flight count.

``retired``: a newer table no longer lists it; it finishes what it has in flight, then its upstream closes.
``full``: it refused a request (429) and none of the requests it had then has ended since; the gateway sends
it nothing new meanwhile, and refuses itself when every replica of a version is full.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.gateway.outlier import OutlierState
from conveyor.gateway.upstream import Upstream


@dataclass(eq=False, slots=True)
class Replica:
    upstream: Upstream
    health: OutlierState
    inflight: int = 0
    name: str = field(default="")
    retired: bool = False
    full: bool = False

    def __post_init__(self) -> None:
        self.name = self.name or self.upstream.address

    @property
    def admitted(self) -> bool:
        return self.health.admitted


def inflight_of(replica: Replica) -> int:
    return replica.inflight
