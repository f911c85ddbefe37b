"""The gateway: the one entry point for clients, routing, balancing, health and retries over replicas."""

from conveyor.gateway.gateway import Gateway
from conveyor.gateway.outlier import OutlierState
from conveyor.gateway.replica import Replica
from conveyor.gateway.table import Route, RoutingTable
from conveyor.gateway.upstream import ConnectionFailed, InProcessUpstream, Upstream

__all__ = [
    "ConnectionFailed",
    "Gateway",
    "InProcessUpstream",
    "OutlierState",
    "Replica",
    "Route",
    "RoutingTable",
    "Upstream",
]
