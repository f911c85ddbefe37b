"""Edge nodes (table ``edge_nodes``, docs/edge.md): register one with its name, deployment and labels, record
its heartbeats, list them. What an edge node *should* serve is the deployment's; this keeps what it says."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry import audit
from conveyor.registry.db import Database
from conveyor.registry.orm import EdgeNodeRow, utcnow
from conveyor.registry.records import Record

MAX_LABELS = 32
MAX_PROBLEM = 2000
HEALTHS = ("starting", "serving", "degraded", "empty")
"""serving: it answers with a verified version; degraded: it serves, but its last update failed; empty: it
has no version to serve (none cached yet); starting: registered, no heartbeat yet."""


@dataclass(frozen=True)
class EdgeInfo(Record):
    name: str
    deployment: str
    labels: dict[str, str]
    address: str | None
    agent_version: str | None
    version: str | None
    health: str
    requests: int
    failed: int
    problem: str | None
    cached: list[str]
    registered_at: datetime  # aware, UTC
    last_seen: datetime

    def to_dict(self) -> dict[str, Any]:
        """camelCase keys (the management API's), ISO times."""
        return {_camel(k): v for k, v in super().to_dict().items()}


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What an edge node reports: the version it serves (None: none), health, its request counts since it
    started, why it refused its latest version (None: it did not), the versions in its cache."""

    version: str | None
    health: str
    requests: int = 0
    failed: int = 0
    problem: str | None = None
    cached: tuple[str, ...] = ()

    def checked(self) -> Heartbeat:
        if self.health not in HEALTHS:
            raise errors.InvalidInput(f"invalid health {self.health!r}: use one of {', '.join(HEALTHS)}")
        if self.requests < 0 or self.failed < 0:
            raise errors.InvalidInput("request counts must not be negative")
        if self.version is not None and not (self.version.isdigit() and len(self.version) <= 18):
            raise errors.InvalidInput(f"invalid version {self.version!r}: a version number")
        return self


class EdgeStore:
    """Edge nodes over a migrated registry ``Database`` (``Registry.edges``)."""

    def __init__(self, database: Database, *, user: str | None = None) -> None:
        self._db = database
        self._user = user

    def register(
        self,
        name: str,
        deployment: str,
        labels: dict[str, str],
        *,
        address: str | None = None,
        agent_version: str | None = None,
        by: str | None = None,
    ) -> EdgeInfo:
        """Register ``name`` (or register it again: a restarted agent, new labels) as following
        ``deployment``; audited as ``edge.register`` when new or changed."""
        check_edge(name, deployment, labels)
        actor = by if by is not None else self._user

        def txn(s: Session) -> EdgeInfo:
            row = s.get(EdgeNodeRow, name)
            now = utcnow()
            changed = row is None or (row.deployment, row.labels) != (deployment, labels)
            if row is None:
                row = EdgeNodeRow(
                    name=name, registered_at=now, health="starting", requests=0, failed=0, cached=[]
                )
                s.add(row)
            row.deployment, row.labels, row.address = deployment, dict(labels), address
            row.agent_version, row.last_seen = agent_version, now
            s.flush()
            if changed:
                details = {"deployment": deployment, "labels": labels, "address": address}
                audit.append(s, actor=actor, action="edge.register", object=name, details=details)
            return _info(row)

        return self._db.transaction(txn, write=True, retries=2)

    def heartbeat(self, name: str, beat: Heartbeat) -> EdgeInfo:
        """Record ``beat`` as the node's latest; NotFound when it is not registered (it registers again)."""
        beat.checked()
        problem = None if beat.problem is None else beat.problem[:MAX_PROBLEM]

        def txn(s: Session) -> EdgeInfo:
            row = s.get(EdgeNodeRow, name)
            if row is None:
                raise errors.NotFound(f"edge node {name!r} is not registered")
            row.version, row.health, row.problem = beat.version, beat.health, problem
            row.requests, row.failed, row.cached = beat.requests, beat.failed, list(beat.cached)
            row.last_seen = utcnow()
            s.flush()
            return _info(row)

        return self._db.transaction(txn, write=True, retries=2)

    def get(self, name: str) -> EdgeInfo:
        def txn(s: Session) -> EdgeInfo:
            row = s.get(EdgeNodeRow, name)
            if row is None:
                raise errors.NotFound(f"edge node {name!r} is not registered")
            return _info(row)

        return self._db.transaction(txn)

    def list(self, deployment: str | None = None) -> builtins.list[EdgeInfo]:
        """Every edge node (of ``deployment``), by name."""

        def txn(s: Session) -> list[EdgeInfo]:
            stmt = select(EdgeNodeRow).order_by(EdgeNodeRow.name)
            if deployment is not None:
                stmt = stmt.where(EdgeNodeRow.deployment == deployment)
            return [_info(r) for r in s.scalars(stmt)]

        return self._db.transaction(txn)

    def delete(self, name: str, *, by: str | None = None) -> None:
        """Forget an edge node (it registers again at its next start or heartbeat)."""

        def txn(s: Session) -> None:
            if s.get(EdgeNodeRow, name) is None:
                raise errors.NotFound(f"edge node {name!r} is not registered")
            s.execute(delete(EdgeNodeRow).where(EdgeNodeRow.name == name))
            audit.append(s, actor=by or self._user, action="edge.delete", object=name, details={})

        self._db.transaction(txn, write=True)


def check_edge(name: str, deployment: str, labels: Any) -> None:
    """InvalidInput naming what is wrong with a registration."""
    from conveyor.spec.resources import label_problem, name_problem

    for value, what in ((name, "edge node name"), (deployment, "deployment name")):
        if problem := name_problem(value, what):
            raise errors.InvalidInput(problem)
    if not isinstance(labels, dict):
        raise errors.InvalidInput("labels must be an object of key: value")
    if len(labels) > MAX_LABELS:
        raise errors.InvalidInput(f"an edge node has at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        if problem := label_problem(key, value):
            raise errors.InvalidInput(problem)


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _info(r: EdgeNodeRow) -> EdgeInfo:
    return EdgeInfo(
        name=r.name,
        deployment=r.deployment,
        labels=dict(r.labels),
        address=r.address,
        agent_version=r.agent_version,
        version=r.version,
        health=r.health,
        requests=r.requests,
        failed=r.failed,
        problem=r.problem,
        cached=list(r.cached),
        registered_at=r.registered_at,
        last_seen=r.last_seen,
    )
