"""What the management API asks of the running control plane (reconciler, routing, load reports).

The API module depends on this interface only; ``conveyor.control.reconciler.Reconciler`` implements it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from conveyor.security.tokens import TokenRecord


class ControlRuntime(Protocol):
    epoch: str
    """Changes every time a control plane starts; part of every routing table."""

    def replicas(self, deployment: str | None = None) -> list[dict[str, Any]]:
        """ReplicaStatus dicts (docs/control-plane.md), optionally of one deployment."""
        ...

    def replica_counts(self, deployment: str) -> dict[str, int]:
        """``{"revision", "desired", "ready", "total"}`` for a deployment: the revision the reconciler works
        towards, its replica count, how many of them are ready (current template) and how many run in all
        (old ones included); zeros when the reconciler has not seen it."""
        ...

    def leadership(self) -> dict[str, Any] | None:
        """The leader election's state for /api/v1/health (control/leader.py): ``{"leader", "holder",
        "leaseSeconds", "current"}``; None when this control plane runs without one."""
        ...

    def routed(self) -> bool:
        """At least one gateway is live and every live one applied the current routing table."""
        ...

    def problem(self, deployment: str) -> str | None:
        """Why the deployment's current revision cannot run (what ran before keeps running), or None."""
        ...

    def rollout(self, deployment: str) -> dict[str, Any] | None:
        """The deployment's rollout in progress (docs/rollouts.md): ``{"number", "strategy", "phase",
        "stableModel", "candidateModel", "step", "weight"}``, or None."""
        ...

    def gateways(self) -> list[dict[str, Any]]:
        """Gateways that reported in the last few seconds: ``{"id", "url", "grpcUrl", "lastSeen", ...}``."""
        ...

    def routing(self) -> dict[str, Any]:
        """The current routing table."""
        ...

    def watch(self) -> AsyncIterator[dict[str, Any]]:
        """The current routing table, then every new one, until the caller stops iterating."""
        ...

    def report(self, report: dict[str, Any]) -> None:
        """A gateway's load report (validated by the API)."""
        ...

    def changed(self, deployment: str | None = None) -> None:
        """Desired state changed (apply, scale, rollback, delete): reconcile now, not at the next tick."""
        ...

    def tokens_changed(self, records: list[TokenRecord]) -> None:
        """The API's token records changed (created, revoked, expired): push them to every gateway."""
        ...

    async def settle(self, timeout_s: float) -> bool:
        """Wait until a reconcile step begun after this call published its routing table and every live
        gateway applied it (a deployment just applied is then routed, held while its replicas start);
        False when that took longer than ``timeout_s``."""
        ...
