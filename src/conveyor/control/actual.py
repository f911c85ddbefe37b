"""Actual state as the reconciler keeps it: each replica it runs, with its state and probes, and the
bookkeeping of each deployment (restart backoff, autoscaler state, the replica count decided)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.control.autoscaler import AutoscalerState
from conveyor.targets.base import ReplicaRecord


@dataclass(eq=False, slots=True)
class Replica:
    record: ReplicaRecord
    state: str = "starting"  # starting -> ready -> draining -> stopping
    since: float = field(default_factory=time.monotonic)
    failures: int = 0
    last_probe: float = 0.0
    probing: asyncio.Task[bool] | None = None
    killed: bool = False  # killed for failing probes or a start timeout: not probed nor reported again
    drain_generation: int | None = None

    def status(self, admitted_by: int) -> dict[str, Any]:
        r = self.record
        return {
            "id": r.id,
            "deployment": r.deployment,
            "revision": r.revision,
            "model": r.model,
            "version": r.version,
            "template": r.template,
            "address": r.address,
            "pid": r.pid,
            "target": r.target,
            # What runs its model (docs/gpu.md); a record from before the field ran on the CPU.
            "provider": r.details.get("provider", "CPUExecutionProvider"),
            "gpu": r.details.get("gpu"),
            "state": self.state,
            "started_at": datetime.fromtimestamp(r.started_at, UTC).isoformat(),
            "gateways": admitted_by,
        }


@dataclass(slots=True)
class DeploymentRun:
    """Bookkeeping per deployment: restart backoff, autoscaler state, the replica count decided."""

    streak: int = 0
    next_start: float = 0.0
    restarts: int = 0
    target: int | None = None
    scaler: AutoscalerState | None = None
    scaler_template: str | None = None
    last_sample: float = 0.0
