"""Outlier detection for a replica: ejected after N consecutive failures, admitted again once a probe passes.

A pure state machine: the gateway feeds it request outcomes and probe results; no clocks, no sockets.
"""

from __future__ import annotations

from conveyor.errors import ConveyorError

# Errors that say the replica (not the request) is at fault. 429 is backpressure, not a fault, and 4xx
# are the client's doing: neither counts, or one bad client could eject every replica.
_REPLICA_FAULTS = frozenset({"internal", "unavailable", "deadline_exceeded", "data_loss"})


def is_replica_fault(exc: BaseException) -> bool:
    return isinstance(exc, ConveyorError) and exc.code in _REPLICA_FAULTS


class OutlierState:
    """Starts not admitted (a replica serves once a readiness probe has passed) unless told it is ready:
    the control plane lists only replicas it has seen ready."""

    __slots__ = ("admitted", "eject_after", "failures")

    def __init__(self, eject_after: int, *, admitted: bool = False) -> None:
        if eject_after < 1:
            raise ValueError("eject_after must be at least 1")
        self.eject_after = eject_after
        self.failures = 0
        self.admitted = admitted

    def success(self) -> None:
        self.failures = 0

    def failure(self) -> bool:
        """Record a failed request or probe; True when this failure ejects the replica."""
        self.failures += 1
        if self.admitted and self.failures >= self.eject_after:
            self.admitted = False
            return True
        return False

    def probe(self, passed: bool) -> bool:
        """Record a health probe; True when this probe (re-)admits the replica."""
        if not passed:
            self.failure()
            return False
        self.failures = 0
        if not self.admitted:
            self.admitted = True
            return True
        return False

    def eject(self) -> None:
        """Take the replica out now (its process is known dead, or hung); the next passing probe brings it
        back."""
        self.admitted = False
