"""The one interface between the reconciler and where replicas run: local processes, Ray, Kubernetes.

The reconciler decides (how many replicas of which template, when one is ready, drained or replaced); a
``Target`` only carries it out and reports what it sees. It speaks of replicas, never of signals or pids: a
drain is "finish in-flight work, then exit", whatever that takes on the target. Every call returns promptly
(the reconciler's loop calls them between steps): a target whose replicas come up somewhere else returns the
record at once and reports the endpoint through ``endpoint`` when it is known.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

LOCAL = "local"


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything one replica of a deployment's revision is started with; replicas of one ``template`` are
    interchangeable (control/desired.py makes the template a digest of the rest)."""

    deployment: str
    revision: int
    template: str
    model: str
    version: str
    model_file: Path
    """The artifact as this control plane reads it (the registry's store, verified)."""
    sha256: str
    """The artifact's digest: a target that copies the bytes elsewhere checks them against it."""
    options: Mapping[str, Any]
    """The replica's options, each a ``--flag`` of ``python -m conveyor.server`` with ``_`` as ``-``
    (threads, batching, limits, cache, ``sha256`` and ``monitor``); None values are left out."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment added to the replica's."""


def replica_id(launch: Launch) -> str:
    """A new replica's id: deployment, template prefix and a random suffix (names its log file)."""
    return f"{launch.deployment}-{launch.template[:6]}-{secrets.token_hex(3)}"


@dataclass(slots=True)
class ReplicaRecord:
    """One replica as recorded in ``run/replicas.json`` (targets/state.py): enough for a restarted control
    plane to find it again through its target."""

    id: str
    deployment: str
    revision: int
    template: str
    model: str
    version: str
    address: str
    """Where gateways reach it (gateway/channel.py dials both): ``unix:PATH`` or ``tcp:HOST:PORT``; empty
    until the target knows it (``Target.endpoint``)."""
    pid: int
    """The process on this machine (local target); 0 when the target runs it elsewhere."""
    pid_start: str
    """The pid's start time (/proc/PID/stat), to tell the replica from a later process with its pid."""
    started_at: float
    """Wall-clock seconds (time.time()) when it was created."""
    target: str = LOCAL
    """The kind of target that runs it ("local", "ray", ...): records of several targets share one file."""
    details: dict[str, str] = field(default_factory=dict)
    """What its target needs to find it again (a Ray actor's name and namespace, ...)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplicaRecord:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def new_record(
    launch: Launch,
    rid: str,
    *,
    target: str,
    address: str = "",
    pid: int = 0,
    pid_start: str = "",
    details: dict[str, str] | None = None,
) -> ReplicaRecord:
    """The record of a replica of ``launch`` created now by a target of kind ``target``."""
    return ReplicaRecord(
        id=rid,
        deployment=launch.deployment,
        revision=launch.revision,
        template=launch.template,
        model=launch.model,
        version=launch.version,
        address=address,
        pid=pid,
        pid_start=pid_start,
        started_at=time.time(),
        target=target,
        details=details or {},
    )


class Target(Protocol):
    """Where a control plane's replicas run. Records of replicas it created or adopted are its own.

    *Replace* is the reconciler's: a rolling update creates the new template's replicas, waits until they
    are ready and every live gateway routes to them, then stops the old ones with ``drain=True``; scaling
    is creating or draining replicas of one template. No method of a target decides any of it.
    """

    kind: str
    """The spec's ``target`` value this serves: "local", "ray", "kubernetes"."""

    def create(self, launch: Launch) -> ReplicaRecord:
        """Start one replica of ``launch`` and return its record at once (not waiting for it to be ready:
        the reconciler probes ``address`` until it answers)."""
        ...

    def endpoint(self, record: ReplicaRecord) -> str | None:
        """The replica's channel address (``unix:PATH`` / ``tcp:HOST:PORT``) once known, else None."""
        ...

    def stop(self, record: ReplicaRecord, *, drain: bool) -> None:
        """``drain``: finish in-flight requests, then exit; else end it now (a replica that does not work).
        Returns at once; ``alive`` says when it is gone. A replica already gone is no error."""
        ...

    def alive(self, record: ReplicaRecord) -> bool:
        """True while this replica (not a later one reusing its pid or name) runs."""
        ...

    def exit_code(self, record: ReplicaRecord) -> int | None:
        """How a replica that is gone exited (negative: killed by a signal); None when unknown."""
        ...

    def log_tail(self, record: ReplicaRecord, lines: int = 5) -> str:
        """Its last ``lines`` log lines joined by " | " ("" when none), for events saying why it failed."""
        ...

    def adopt(self, record: ReplicaRecord) -> bool:
        """Take over a replica a previous control plane recorded; False when it is gone (then forget it).
        The reconciler probes an adopted replica and stops it if it does not answer."""
        ...

    def keepalive(self) -> None:
        """Tell the replicas their control plane lives (called every step while it leads): a replica left
        without one for ``replica_orphan_timeout_s`` drains and exits."""
        ...

    def forget(self, record: ReplicaRecord) -> None:
        """Drop what is kept for a replica that is gone (reap its process, remove its socket)."""
        ...

    async def stop_all(self, records: Sequence[ReplicaRecord], timeout_s: float) -> None:
        """Drain every replica of ``records``, end those still running after ``timeout_s``, forget all."""
        ...

    def release(self) -> None:
        """After ``stop_all`` at the control plane's clean stop: nothing of it left (lease, sockets)."""
        ...
