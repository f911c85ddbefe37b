"""Rollouts of deployments (``Registry.rollouts``): the record the rollout controller moves through its
phases, and its events. Starting one supersedes the deployment's active one in the same transaction; at
most one is active (a partial unique index too), and ``update(expect_phase=...)`` turns a second writer into
a Conflict.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Collection
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry import audit
from conveyor.registry.db import Database
from conveyor.registry.deployments import _check_name, _deployment, _revision_row, check_json
from conveyor.registry.orm import DeploymentRow, RolloutEventRow, RolloutRow, utcnow
from conveyor.registry.records import (
    ROLLOUT_ACTIVE_PHASES,
    ROLLOUT_ENDED_PHASES,
    RolloutEventInfo,
    RolloutInfo,
)

PHASES: Final = (*ROLLOUT_ACTIVE_PHASES, *ROLLOUT_ENDED_PHASES)
_KIND_MAX = 64
_MODEL_MAX = 300
_STRATEGY_MAX = 16
_RETRIES = 8
# What ``update`` may change; the rest (who, what from, what to, the spec) is fixed when it starts.
_CHANGEABLE = frozenset(
    {
        "phase",
        "step",
        "weight",
        "failed_checks",
        "passed_checks",
        "step_started_at",
        "reason",
        "finished_at",
        "candidate_revision",
    }
)


class RolloutStore:
    """Rollouts and their events over a migrated registry ``Database``."""

    def __init__(self, database: Database, *, user: str | None = None) -> None:
        self._db = database
        self._user = user

    # -- writing -----------------------------------------------------------------------------------------

    def start(
        self,
        deployment: str,
        *,
        stable_revision: int,
        candidate_revision: int,
        stable_model: str | None,
        candidate_model: str | None,
        strategy: str,
        spec: dict[str, Any],
        weight: float,
        started_by: str | None,
        forced: bool = False,
    ) -> RolloutInfo:
        """A new rollout (``progressing``, step 0 at ``weight``); the deployment's active one, if any, is
        ``superseded`` in the same transaction. Both revisions must exist. Audited as ``rollout.start``."""
        _check_name(deployment)
        for what, number in (
            ("stable_revision", stable_revision),
            ("candidate_revision", candidate_revision),
        ):
            _check_int(what, number, low=1)
        for what, model in (("stable_model", stable_model), ("candidate_model", candidate_model)):
            if model is not None and (not isinstance(model, str) or not 0 < len(model) <= _MODEL_MAX):
                raise errors.InvalidInput(
                    f"invalid {what} {model!r}: use NAME:VERSION (at most {_MODEL_MAX})"
                )
        if not isinstance(strategy, str) or not 0 < len(strategy) <= _STRATEGY_MAX:
            raise errors.InvalidInput(f"invalid strategy {strategy!r}")
        _check_weight(weight)
        spec = check_json(spec, "a rollout spec")
        by = started_by if started_by is not None else self._user

        def txn(s: Session) -> RolloutInfo:
            row = _deployment(s, deployment, lock=True)  # serializes numbers and the supersede
            for revision in (stable_revision, candidate_revision):
                _revision_row(s, row, revision)
            last = s.scalar(select(func.max(RolloutRow.number)).where(RolloutRow.deployment_id == row.id))
            number = (last or 0) + 1
            now = utcnow()
            before = _active_row(s, row.id)
            if before is not None:
                why = f"superseded by rollout {number}"
                before.phase, before.finished_at, before.updated_at, before.reason = (
                    "superseded",
                    now,
                    now,
                    why,
                )
                _add_event(s, before.id, "Superseded", why, {"by": number})
                s.flush()  # out of the active index before the new one enters it
            new = RolloutRow(
                deployment_id=row.id,
                number=number,
                strategy=strategy,
                phase="progressing",
                stable_revision=stable_revision,
                candidate_revision=candidate_revision,
                stable_model=stable_model,
                candidate_model=candidate_model,
                step=0,
                weight=float(weight),
                failed_checks=0,
                passed_checks=0,
                spec=spec,
                started_at=now,
                step_started_at=now,
                updated_at=now,
                started_by=by,
                forced=bool(forced),
            )
            s.add(new)
            s.flush()
            message = (
                f"{strategy}: revision {stable_revision} ({stable_model}) -> "
                f"{candidate_revision} ({candidate_model})"
            )
            _add_event(s, new.id, "Started", message, {"weight": float(weight), "forced": bool(forced)})
            details: dict[str, Any] = {
                "rollout": number,
                "strategy": strategy,
                "stable_revision": stable_revision,
                "candidate_revision": candidate_revision,
                "stable_model": stable_model,
                "candidate_model": candidate_model,
                "forced": bool(forced),
            }
            if before is not None:
                details["superseded"] = before.number
            audit.append(s, actor=by, action="rollout.start", object=deployment, details=details)
            return _info(deployment, new)

        return self._db.transaction(txn, write=True, retries=_RETRIES)

    def update(
        self,
        rollout_id: int,
        *,
        expect_phase: str | Collection[str] | None = None,
        actor: str | None = None,
        audit_action: str | None = None,
        audit_details: dict[str, Any] | None = None,
        event: tuple[str, str, dict[str, Any] | None] | None = None,
        **changes: Any,
    ) -> RolloutInfo:
        """Change an active rollout: ``changes`` among phase, step, weight, failed_checks, passed_checks,
        step_started_at, reason, finished_at, candidate_revision. Conflict when the stored phase is not
        ``expect_phase`` (another writer got there first) or the rollout has ended (ended ones are final).
        Moving to an ended phase sets ``finished_at`` (now, unless given). ``event`` (kind, message, data) and
        ``audit_action`` (with ``audit_details``) are written in the same transaction."""
        _check_int("rollout_id", rollout_id, low=1)
        unknown = sorted(set(changes) - _CHANGEABLE)
        if unknown:
            raise errors.InvalidInput(
                f"a rollout's {', '.join(unknown)} cannot change: {', '.join(sorted(_CHANGEABLE))} can"
            )
        _check_changes(changes)
        expected = _phases(expect_phase)
        if event is not None:
            event = (
                _check_kind(event[0]),
                _check_message(event[1]),
                check_json(event[2] or {}, "event data"),
            )
        if audit_action is not None:
            audit_details = check_json(audit_details or {}, "audit details")
        by = actor if actor is not None else self._user

        def txn(s: Session) -> RolloutInfo:
            row, name = _rollout_row(s, rollout_id, lock=True)
            if expected is not None and row.phase not in expected:
                raise errors.Conflict(
                    f"rollout {row.number} of deployment {name!r} is {row.phase}, not "
                    f"{' or '.join(expected)}: it changed meanwhile"
                )
            if row.phase in ROLLOUT_ENDED_PHASES:
                raise errors.Conflict(f"rollout {row.number} of deployment {name!r} has ended ({row.phase})")
            now = utcnow()
            for key, value in changes.items():
                setattr(row, key, float(value) if key == "weight" else value)
            if row.phase in ROLLOUT_ENDED_PHASES and row.finished_at is None:
                row.finished_at = now
            if "candidate_revision" in changes:
                _revision_row(s, _deployment_by_id(s, row.deployment_id), row.candidate_revision)
            row.updated_at = now
            s.flush()
            if event is not None:
                _add_event(s, row.id, *event)
            if audit_action is not None:
                details = {"rollout": row.number, "phase": row.phase, **(audit_details or {})}
                audit.append(s, actor=by, action=audit_action, object=name, details=details)
            return _info(name, row)

        return self._db.transaction(txn, write=True)

    def add_event(
        self, rollout_id: int, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> RolloutEventInfo:
        """Append an event (``kind`` like step, check, pause) to the rollout's log, ended or not."""
        _check_int("rollout_id", rollout_id, low=1)
        kind, message = _check_kind(kind), _check_message(message)
        clean = check_json(data or {}, "event data")

        def txn(s: Session) -> RolloutEventInfo:
            _rollout_row(s, rollout_id)
            return _event_info(_add_event(s, rollout_id, kind, message, clean))

        return self._db.transaction(txn, write=True)

    # -- reading -----------------------------------------------------------------------------------------

    def active(self, deployment: str) -> RolloutInfo | None:
        """The deployment's active rollout (progressing, paused or waiting), or None."""
        _check_name(deployment)

        def txn(s: Session) -> RolloutInfo | None:
            row = _active_row(s, _deployment(s, deployment).id)
            return None if row is None else _info(deployment, row)

        return self._db.transaction(txn)

    def active_all(self) -> builtins.list[RolloutInfo]:
        """Every active rollout, by deployment name: what a starting control plane takes over."""

        def txn(s: Session) -> list[RolloutInfo]:
            stmt = (
                select(RolloutRow, DeploymentRow.name)
                .join(DeploymentRow, DeploymentRow.id == RolloutRow.deployment_id)
                .where(RolloutRow.phase.in_(ROLLOUT_ACTIVE_PHASES))
                .order_by(DeploymentRow.name)
            )
            return [_info(name, row) for row, name in s.execute(stmt).tuples()]

        return self._db.transaction(txn)

    def get(self, deployment: str, number: int | None = None) -> RolloutInfo:
        """Rollout ``number`` of the deployment (the latest when None); NotFound when there is none."""
        _check_name(deployment)
        if number is not None:
            _check_int("number", number, low=1)

        def txn(s: Session) -> RolloutInfo:
            row = _deployment(s, deployment)
            stmt = select(RolloutRow).where(RolloutRow.deployment_id == row.id)
            if number is None:
                stmt = stmt.order_by(RolloutRow.number.desc()).limit(1)
            else:
                stmt = stmt.where(RolloutRow.number == number)
            found = s.scalars(stmt).one_or_none()
            if found is None:
                what = "no rollout" if number is None else f"no rollout {number}"
                raise errors.NotFound(f"deployment {deployment!r} has {what}")
            return _info(deployment, found)

        return self._db.transaction(txn)

    def list(self, deployment: str, limit: int = 20) -> builtins.list[RolloutInfo]:
        """The deployment's ``limit`` most recent rollouts, oldest first."""
        _check_name(deployment)
        _check_int("limit", limit, low=1)

        def txn(s: Session) -> list[RolloutInfo]:
            row = _deployment(s, deployment)
            stmt = (
                select(RolloutRow)
                .where(RolloutRow.deployment_id == row.id)
                .order_by(RolloutRow.number.desc())
                .limit(limit)
            )
            return [_info(deployment, r) for r in reversed(builtins.list(s.scalars(stmt)))]

        return self._db.transaction(txn)

    def events(self, rollout_id: int, limit: int = 500) -> builtins.list[RolloutEventInfo]:
        """The rollout's ``limit`` most recent events, oldest first (in the order they were written)."""
        _check_int("rollout_id", rollout_id, low=1)
        _check_int("limit", limit, low=1)

        def txn(s: Session) -> list[RolloutEventInfo]:
            _rollout_row(s, rollout_id)
            stmt = (
                select(RolloutEventRow)
                .where(RolloutEventRow.rollout_id == rollout_id)
                .order_by(RolloutEventRow.id.desc())
                .limit(limit)
            )
            return [_event_info(e) for e in reversed(builtins.list(s.scalars(stmt)))]

        return self._db.transaction(txn)


# -- helpers ---------------------------------------------------------------------------------------------


def _active_row(s: Session, deployment_id: int) -> RolloutRow | None:
    stmt = (
        select(RolloutRow)
        .where(RolloutRow.deployment_id == deployment_id, RolloutRow.phase.in_(ROLLOUT_ACTIVE_PHASES))
        .with_for_update()
    )
    return s.scalars(stmt).one_or_none()


def _rollout_row(s: Session, rollout_id: int, *, lock: bool = False) -> tuple[RolloutRow, str]:
    stmt = (
        select(RolloutRow, DeploymentRow.name)
        .join(DeploymentRow, DeploymentRow.id == RolloutRow.deployment_id)
        .where(RolloutRow.id == rollout_id)
    )
    if lock:
        stmt = stmt.with_for_update(of=RolloutRow)
    found = s.execute(stmt).tuples().one_or_none()
    if found is None:
        raise errors.NotFound(f"rollout {rollout_id} not found (its deployment may have been deleted)")
    return found


def _deployment_by_id(s: Session, deployment_id: int) -> DeploymentRow:
    row = s.get(DeploymentRow, deployment_id)
    assert row is not None  # the foreign key
    return row


def _add_event(
    s: Session, rollout_id: int, kind: str, message: str, data: dict[str, Any] | None = None
) -> RolloutEventRow:
    event = RolloutEventRow(rollout_id=rollout_id, at=utcnow(), kind=kind, message=message, data=data or {})
    s.add(event)
    s.flush()
    return event


def _info(deployment: str, r: RolloutRow) -> RolloutInfo:
    return RolloutInfo(
        id=r.id,
        deployment=deployment,
        number=r.number,
        strategy=r.strategy,
        phase=r.phase,
        stable_revision=r.stable_revision,
        candidate_revision=r.candidate_revision,
        stable_model=r.stable_model,
        candidate_model=r.candidate_model,
        step=r.step,
        weight=r.weight,
        failed_checks=r.failed_checks,
        passed_checks=r.passed_checks,
        spec=r.spec,
        started_at=r.started_at,
        step_started_at=r.step_started_at,
        updated_at=r.updated_at,
        finished_at=r.finished_at,
        started_by=r.started_by,
        reason=r.reason,
        forced=r.forced,
    )


def _event_info(e: RolloutEventRow) -> RolloutEventInfo:
    return RolloutEventInfo(
        id=e.id, rollout_id=e.rollout_id, at=e.at, kind=e.kind, message=e.message, data=e.data
    )


def _phases(expect: str | Collection[str] | None) -> tuple[str, ...] | None:
    if expect is None:
        return None
    phases = (expect,) if isinstance(expect, str) else tuple(expect)
    for phase in phases:
        _check_phase(phase)
    return phases


def _check_phase(phase: Any) -> str:
    if phase not in PHASES:
        raise errors.InvalidInput(f"invalid rollout phase {phase!r}: one of {', '.join(PHASES)}")
    return str(phase)


def _check_changes(changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if key == "phase":
            _check_phase(value)
        elif key in ("step", "failed_checks", "passed_checks"):
            _check_int(key, value, low=0)
        elif key == "candidate_revision":
            _check_int(key, value, low=1)
        elif key == "weight":
            _check_weight(value)
        elif key == "reason":
            if value is not None and not isinstance(value, str):
                raise errors.InvalidInput(f"reason must be a string or None, not {type(value).__name__}")
        elif (value is not None or key == "step_started_at") and (  # finished_at may be None
            not isinstance(value, datetime) or value.tzinfo is None
        ):
            raise errors.InvalidInput(f"{key} must be a datetime with a time zone, got {value!r}")
    phase = changes.get("phase")
    if phase in ROLLOUT_ACTIVE_PHASES and changes.get("finished_at") is not None:
        raise errors.InvalidInput(f"an active rollout ({phase}) has no finished_at")


def _check_int(what: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 2**63:
        raise errors.InvalidInput(f"invalid {what} {value!r}: an integer >= {low}")
    return value


def _check_weight(weight: Any) -> float:
    ok = isinstance(weight, int | float) and not isinstance(weight, bool) and math.isfinite(weight)
    if not ok or not 0 <= weight <= 100:
        raise errors.InvalidInput(f"invalid weight {weight!r}: a percentage from 0 to 100")
    return float(weight)


def _check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or not 0 < len(kind) <= _KIND_MAX:
        raise errors.InvalidInput(f"invalid event kind {kind!r}: 1-{_KIND_MAX} characters")
    return kind


def _check_message(message: Any) -> str:
    if not isinstance(message, str):
        raise errors.InvalidInput(f"an event message must be a string, not {type(message).__name__}")
    return message
