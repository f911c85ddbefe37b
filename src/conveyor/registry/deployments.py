"""Deployments with immutable, numbered revisions: apply a canonical spec, read its history, roll back.

Revision numbers are allocated like model versions (PostgreSQL: the deployment row FOR UPDATE; SQLite: BEGIN
IMMEDIATE); revisions are never edited or deleted, so a number is never reused. ``delete`` removes it all.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry import audit
from conveyor.registry.db import Database
from conveyor.registry.orm import DeploymentEvent, DeploymentRevision, DeploymentRow, utcnow
from conveyor.registry.records import ApplyResult, DeploymentInfo, EventInfo, RevisionInfo

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_APPLY_RETRIES = 8
_MODEL_MAX = 300


class DeploymentStore:
    """Deployments and their revisions over a migrated registry ``Database`` (``Registry.deployments``)."""

    def __init__(self, database: Database, *, user: str | None = None) -> None:
        self._db = database
        self._user = user

    # -- writing -----------------------------------------------------------------------------------------

    def apply(
        self,
        spec: dict[str, Any],
        fingerprint: str,
        *,
        model: str | None = None,
        created_by: str | None = None,
        change_cause: str = "apply",
        action: str = "deployment.apply",
    ) -> ApplyResult:
        """Store ``spec`` (canonical ``to_dict()``) as a new revision unless it is current.

        ``model`` is the resolved ``name:version`` the revision runs. Current means the same fingerprint AND
        the same model, so re-applying a spec whose alias has moved since makes a new revision. A new revision
        is recorded in the audit log as ``action`` (``deployment.scale`` for a scale).
        """
        (result,) = self.apply_all(
            [(spec, fingerprint, model)], created_by=created_by, change_cause=change_cause, action=action
        )
        return result

    def apply_all(
        self,
        items: Sequence[tuple[dict[str, Any], str, str | None]],
        *,
        created_by: str | None = None,
        change_cause: str = "apply",
        action: str = "deployment.apply",
    ) -> builtins.list[ApplyResult]:
        """``apply`` for several ``(spec, fingerprint, model)`` in ONE transaction: all are stored or none.

        Deployments are locked in name order (two concurrent multi-document applies cannot deadlock);
        results come back in the order given. The same name twice is refused.
        """
        checked = []
        for spec, fingerprint, model in items:
            name = _spec_name(spec)
            if not isinstance(fingerprint, str) or not _FINGERPRINT.match(fingerprint):
                raise errors.InvalidInput(f"invalid fingerprint {fingerprint!r}: use 64 lowercase hex digits")
            if model is not None and (not isinstance(model, str) or not 0 < len(model) <= _MODEL_MAX):
                raise errors.InvalidInput(f"invalid model {model!r}: use NAME:VERSION (at most {_MODEL_MAX})")
            checked.append((name, check_json(spec), fingerprint, model))
        names = [c[0] for c in checked]
        if len(set(names)) != len(names):
            raise errors.InvalidInput(f"deployment names repeat: {', '.join(sorted(names))}")
        cause = _check_text("change_cause", change_cause)
        by = created_by if created_by is not None else self._user

        def txn(s: Session) -> list[ApplyResult]:
            results: dict[str, ApplyResult] = {}
            made: list[tuple[str, dict[str, Any]]] = []
            for name, spec, fingerprint, model in sorted(checked, key=lambda c: c[0]):
                row = self._lock_or_create(s, name, by)
                if row.current_revision:
                    current = _revision_row(s, row, row.current_revision)
                    if (current.fingerprint, current.model) == (fingerprint, model):
                        results[name] = ApplyResult(name, row.current_revision, changed=False)
                        continue
                revision = _add_revision(s, row, spec, fingerprint, model, by, cause)
                results[name] = ApplyResult(name, revision, changed=True)
                made.append((name, _audit_details(spec, revision, model, fingerprint, cause)))
            # After every row lock: the audit lock is taken last, so it never waits inside a row lock.
            for name, details in made:
                audit.append(s, actor=by, action=action, object=name, details=details)
            return [results[name] for name in names]

        return self._db.transaction(txn, write=True, retries=_APPLY_RETRIES)

    def rollback(
        self,
        name: str,
        to_revision: int | None = None,
        *,
        created_by: str | None = None,
        change_cause: str | None = None,
    ) -> ApplyResult:
        """Apply an earlier revision's spec and model as a new revision (default: the one before current).

        A target whose spec and model equal the current ones is a no-op (``changed=False``). The default
        target is ``current - 1``, so rolling back twice returns to where it started, like ``kubectl rollout
        undo``. ``change_cause`` is the new revision's (default ``rollback to N``), e.g. a rollout's reason.
        """
        _check_name(name)
        if to_revision is not None:
            _check_revision(to_revision)
        if change_cause is not None:
            _check_text("change_cause", change_cause)
        by = created_by if created_by is not None else self._user

        def txn(s: Session) -> ApplyResult:
            row = _deployment(s, name, lock=True)
            target_number = to_revision if to_revision is not None else row.current_revision - 1
            if target_number < 1:
                raise errors.Conflict(f"deployment {name!r} has no earlier revision to roll back to")
            target = _revision_row(s, row, target_number)
            current = _revision_row(s, row, row.current_revision)
            if (target.fingerprint, target.model) == (current.fingerprint, current.model):
                return ApplyResult(name, row.current_revision, changed=False)
            cause = change_cause if change_cause is not None else f"rollback to {target_number}"
            before = row.current_revision
            revision = _add_revision(s, row, target.spec, target.fingerprint, target.model, by, cause)
            details: dict[str, Any] = {"from_revision": before, "to_revision": target_number}
            details.update(revision=revision, model=target.model)
            if change_cause is not None:
                details["change_cause"] = change_cause
            audit.append(s, actor=by, action="deployment.rollback", object=name, details=details)
            return ApplyResult(name, revision, changed=True)

        return self._db.transaction(txn, write=True, retries=_APPLY_RETRIES)

    def delete(self, name: str, *, user: str | None = None) -> None:
        """Delete a deployment with all its revisions and events; the name may then start again at 1."""
        _check_name(name)
        by = user if user is not None else self._user

        def txn(s: Session) -> None:
            row = _deployment(s, name, lock=True)
            current = _revision_row(s, row, row.current_revision) if row.current_revision else None
            details = {"revision": row.current_revision, "model": current.model if current else None}
            s.execute(delete(DeploymentRow).where(DeploymentRow.id == row.id))
            audit.append(s, actor=by, action="deployment.delete", object=name, details=details)

        self._db.transaction(txn, write=True)

    def record_event(self, name: str, kind: str, message: str) -> EventInfo:
        """Append an event (``kind`` like ``ScaledUp``, ``ReplicaFailed``) to the deployment's log."""
        _check_name(name)
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise errors.InvalidInput(f"invalid event kind {kind!r}: 1-64 letters, digits, '_.-'")
        message = _check_text("message", message, allow_empty=True)

        def txn(s: Session) -> EventInfo:
            row = _deployment(s, name)
            return _event_info(name, _add_event(s, row, kind, message))

        return self._db.transaction(txn, write=True)

    # -- reading -----------------------------------------------------------------------------------------

    def get(self, name: str) -> DeploymentInfo:
        _check_name(name)

        def txn(s: Session) -> DeploymentInfo:
            row = _deployment(s, name)
            return _deployment_info(row, _revision_row(s, row, row.current_revision))

        return self._db.transaction(txn)

    def list(self) -> list[DeploymentInfo]:
        """Every deployment with its current spec, by name."""

        def txn(s: Session) -> list[DeploymentInfo]:
            stmt = (
                select(DeploymentRow, DeploymentRevision)
                .join(
                    DeploymentRevision,
                    (DeploymentRevision.deployment_id == DeploymentRow.id)
                    & (DeploymentRevision.revision == DeploymentRow.current_revision),
                )
                .order_by(DeploymentRow.name)
            )
            return [_deployment_info(d, r) for d, r in s.execute(stmt).tuples()]

        return self._db.transaction(txn)

    def history(self, name: str) -> builtins.list[RevisionInfo]:
        """Every revision of the deployment, oldest first."""
        _check_name(name)

        def txn(s: Session) -> list[RevisionInfo]:
            row = _deployment(s, name)
            stmt = (
                select(DeploymentRevision)
                .where(DeploymentRevision.deployment_id == row.id)
                .order_by(DeploymentRevision.revision)
            )
            return [_revision_info(name, r) for r in s.scalars(stmt)]

        return self._db.transaction(txn)

    def revision(self, name: str, revision: int) -> RevisionInfo:
        _check_name(name)
        _check_revision(revision)

        def txn(s: Session) -> RevisionInfo:
            return _revision_info(name, _revision_row(s, _deployment(s, name), revision))

        return self._db.transaction(txn)

    def events(self, name: str, limit: int = 20) -> builtins.list[EventInfo]:
        """The ``limit`` most recent events, oldest first."""
        _check_name(name)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise errors.InvalidInput(f"invalid limit {limit!r}: use an integer >= 1")

        def txn(s: Session) -> list[EventInfo]:
            row = _deployment(s, name)
            stmt = (
                select(DeploymentEvent)
                .where(DeploymentEvent.deployment_id == row.id)
                .order_by(DeploymentEvent.id.desc())
                .limit(limit)
            )
            return [_event_info(name, e) for e in reversed(list(s.scalars(stmt)))]

        return self._db.transaction(txn)

    # -- helpers -----------------------------------------------------------------------------------------

    def _lock_or_create(self, s: Session, name: str, by: str | None) -> DeploymentRow:
        # ON CONFLICT DO NOTHING settles two first applies; FOR UPDATE then serializes revision numbers
        # on PostgreSQL (SQLite's BEGIN IMMEDIATE already did).
        insert: Any = postgresql.insert if self._db.is_postgres else sqlite.insert
        now = utcnow()
        s.execute(
            insert(DeploymentRow)
            .values(name=name, current_revision=0, created_at=now, updated_at=now, created_by=by)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        return _deployment(s, name, lock=True)


def _add_revision(
    s: Session,
    row: DeploymentRow,
    spec: dict[str, Any],
    fingerprint: str,
    model: str | None,
    by: str | None,
    cause: str,
) -> int:
    row.current_revision += 1
    row.updated_at = utcnow()
    s.add(
        DeploymentRevision(
            deployment_id=row.id,
            revision=row.current_revision,
            spec=spec,
            fingerprint=fingerprint,
            model=model,
            created_at=row.updated_at,
            created_by=by,
            change_cause=cause,
        )
    )
    _add_event(s, row, "RevisionCreated", f"revision {row.current_revision}: {cause}")
    s.flush()
    return row.current_revision


def _audit_details(
    spec: dict[str, Any], revision: int, model: str | None, fingerprint: str, cause: str
) -> dict[str, Any]:
    """What the audit log keeps of a new revision: enough to tell what changed, never the whole spec."""
    details: dict[str, Any] = {"revision": revision, "model": model, "fingerprint": fingerprint}
    inner = spec.get("spec")
    if isinstance(inner, dict) and "replicas" in inner:
        details["replicas"] = inner["replicas"]
    details["change_cause"] = cause
    return details


def _add_event(s: Session, row: DeploymentRow, kind: str, message: str) -> DeploymentEvent:
    event = DeploymentEvent(deployment_id=row.id, time=utcnow(), kind=kind, message=message)
    s.add(event)
    s.flush()
    return event


def _deployment(s: Session, name: str, *, lock: bool = False) -> DeploymentRow:
    stmt = select(DeploymentRow).where(DeploymentRow.name == name)
    if lock:
        stmt = stmt.with_for_update()
    row = s.scalars(stmt).one_or_none()
    if row is None:
        raise errors.NotFound(f"deployment {name!r} not found")
    return row


def _revision_row(s: Session, row: DeploymentRow, revision: int) -> DeploymentRevision:
    stmt = select(DeploymentRevision).where(
        DeploymentRevision.deployment_id == row.id, DeploymentRevision.revision == revision
    )
    found = s.scalars(stmt).one_or_none()
    if found is None:
        raise errors.NotFound(f"revision {revision} of deployment {row.name!r} not found")
    return found


def _deployment_info(row: DeploymentRow, current: DeploymentRevision) -> DeploymentInfo:
    return DeploymentInfo(
        name=row.name,
        revision=row.current_revision,
        spec=current.spec,
        fingerprint=current.fingerprint,
        model=current.model,
        created_at=row.created_at,
        updated_at=row.updated_at,
        created_by=row.created_by,
    )


def _revision_info(name: str, r: DeploymentRevision) -> RevisionInfo:
    return RevisionInfo(
        name=name,
        revision=r.revision,
        spec=r.spec,
        fingerprint=r.fingerprint,
        model=r.model,
        created_at=r.created_at,
        created_by=r.created_by,
        change_cause=r.change_cause,
    )


def _event_info(name: str, e: DeploymentEvent) -> EventInfo:
    return EventInfo(name=name, time=e.time, kind=e.kind, message=e.message)


def _spec_name(spec: Any) -> str:
    if not isinstance(spec, dict):
        raise errors.InvalidInput(f"a deployment spec must be a mapping, not {type(spec).__name__}")
    metadata = spec.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if name is None:
        raise errors.InvalidInput("a deployment spec needs metadata.name")
    return _check_name(name)


def _check_name(name: str) -> str:
    """The spec's rule for resource names (a DNS label), so the API and the files word it the same way."""
    from conveyor.spec.resources import name_problem

    if problem := name_problem(name, "deployment name"):
        raise errors.InvalidInput(problem)
    return name


def _check_revision(revision: int) -> int:
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise errors.InvalidInput(f"invalid revision {revision!r}: revisions are integers starting at 1")
    return revision


def _check_text(what: str, value: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise errors.InvalidInput(f"{what} must be a {'' if allow_empty else 'non-empty '}string")
    return value


def check_json(value: dict[str, Any], what: str = "a deployment spec") -> dict[str, Any]:
    """``value`` as stored and read back: the round trip makes a later read return exactly what was written
    (and non-JSON values fail here, naming ``what``)."""
    if not isinstance(value, dict):
        raise errors.InvalidInput(f"{what} must be a JSON object, not {type(value).__name__}")
    try:
        return json.loads(json.dumps(value, allow_nan=False))  # type: ignore[no-any-return]
    except (TypeError, ValueError) as e:
        raise errors.InvalidInput(f"{what} must be JSON-able: {e}") from None
