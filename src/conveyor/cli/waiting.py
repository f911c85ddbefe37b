"""Waiting for deployments to serve what was applied: ``apply --wait``, ``rollback --wait``, ``up -f``.

A deployment has rolled out when the control plane reports it so (docs/control-plane.md): its desired
replicas are ready with the revision's template, the old ones are gone, and it is ``routed`` (every live
gateway applied the table that routes to them). A deployment whose new revision started a progressive
rollout (docs/rollouts.md; its status then has a ``rollout``) is waited for until the candidate's replicas
are ready and routed: the stable's keep running, and the rollout takes its own time (`conveyor rollout
status NAME --watch`).
"""

from __future__ import annotations

import time
from typing import Any

from conveyor.cli.client import ApiClient
from conveyor.cli.output import console
from conveyor.errors import ConversionError, DeadlineExceeded


def rolled_out(deployment: dict[str, Any]) -> bool:
    """The control plane works on this revision, its desired replicas are ready (of the revision's template:
    version, batching, threads), no other replica is left, and every gateway routes to them. During a
    rollout the stable's replicas are left: the candidate's being ready and routed is enough."""
    counts = deployment["replicas"]
    ready = bool(
        deployment.get("routed")
        and counts.get("revision") == deployment["revision"]
        and counts["ready"] >= counts["desired"]
    )
    return ready and (bool(deployment.get("rollout")) or counts["total"] == counts["desired"])


def wait_rolled_out(api: ApiClient, names: list[str], timeout_s: float, *, quiet: bool = False) -> None:
    """Until every named deployment rolled out; ConversionError when one cannot run, DeadlineExceeded."""
    deadline = time.monotonic() + timeout_s
    with console.status("Waiting for the rollout…", spinner="dots") as status:
        while True:
            rows = [api.get(f"/deployments/{name}") for name in names]
            for d in rows:
                if d.get("problem"):
                    raise ConversionError(f"deployment {d['name']} cannot run: {d['problem']}")
            pending = [d for d in rows if not rolled_out(d)]
            if not pending:
                break
            if time.monotonic() > deadline:
                what = ", ".join(f"{d['name']} {_progress(d)}" for d in pending)
                raise DeadlineExceeded(
                    f"not rolled out within {timeout_s:g}s: {what} (see `conveyor describe deployment NAME`)"
                )
            status.update(
                "Waiting for the rollout: " + ", ".join(f"{d['name']} {_progress(d)}" for d in rows)
            )
            time.sleep(0.2)
    if not quiet:
        for d in rows:
            console.print(done_line(d), highlight=False)


def done_line(d: dict[str, Any]) -> str:
    """What `apply --wait` says of a deployment it waited for."""
    if rollout := d.get("rollout"):
        return f"rollout {rollout['number']} started: conveyor rollout status {d['name']} --watch"
    return f"deployment/{d['name']} rolled out: {_progress(d)} replicas of {d.get('model')}"


def _progress(d: dict[str, Any]) -> str:
    return f"{d['replicas']['ready']}/{d['replicas']['desired']}"
