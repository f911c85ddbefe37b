"""The audit log in the registry database: ``append`` a record inside the transaction of the change it records
(both commit or neither), read the log back, verify its hash chain (conveyor.security.audit_chain).

Appends are serialized across processes, so seq numbers and the chain never fork: PostgreSQL takes an
advisory transaction lock first; on SQLite the registry's write transactions (BEGIN IMMEDIATE) already are.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import String, select, text, type_coerce
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry.db import Database
from conveyor.registry.orm import AuditRecord, utcnow
from conveyor.registry.records import Record
from conveyor.security.audit_chain import GENESIS, Problem, record_hash, verify

# Arbitrary constant shared by every Conveyor process ("audit"): serializes appends on PostgreSQL.
_APPEND_LOCK_KEY = 0x6175646974
UNKNOWN_ACTOR = "unknown"
_MAX = {"actor": 256, "action": 64, "object": 300}
DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class AuditEntry(Record):
    """One audit record as stored: who did what to which object, when, and its place in the chain."""

    seq: int
    time: datetime  # aware, UTC
    actor: str
    action: str  # like model.register, alias.set, deployment.apply, token.create, login.refused
    object: str  # like iris:3, iris@production, deployment/web, token/ci
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditCheck(Record):
    """The outcome of ``AuditLog.verify``: how many records were read, the head, and the first problem."""

    records: int
    head_seq: int  # 0 for an empty log
    head_hash: str  # GENESIS for an empty log: keep it elsewhere to notice a rewritten or cut tail
    problem: Problem | None

    @property
    def intact(self) -> bool:
        return self.problem is None


def append(
    session: Session, *, actor: str | None, action: str, object: str, details: dict[str, Any] | None = None
) -> AuditEntry:
    """Add a record to the chain inside ``session``'s transaction, which must be a registry WRITE transaction
    (``Database.transaction(..., write=True)``). Call it last in the transaction: the lock it takes on
    PostgreSQL is held until commit, and taking row locks after it could deadlock with another change.
    ``actor`` None is recorded as ``unknown``; ``details`` must be JSON (never put secrets in it)."""
    fields = {"actor": actor or UNKNOWN_ACTOR, "action": action, "object": object}
    for name, value in fields.items():
        if not isinstance(value, str) or not 0 < len(value) <= _MAX[name]:
            raise errors.InvalidInput(
                f"audit {name} must be a string of 1-{_MAX[name]} characters: {value!r}"
            )
    try:  # the stored form: what verify will read back on either database
        clean: dict[str, Any] = orjson.loads(orjson.dumps(details or {}))
    except TypeError as e:
        raise errors.InvalidInput(f"audit details must be JSON: {e}") from None
    if not isinstance(clean, dict):
        raise errors.InvalidInput("audit details must be a JSON object")
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _APPEND_LOCK_KEY})
    last = session.execute(
        select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
    ).one_or_none()
    seq, prev_hash = (1, GENESIS) if last is None else (last.seq + 1, last.hash)
    time = utcnow()
    digest = record_hash(seq=seq, time=time, details=clean, prev_hash=prev_hash, **fields)
    row = AuditRecord(seq=seq, time=time, details=clean, prev_hash=prev_hash, hash=digest, **fields)
    session.add(row)
    session.flush()
    return _entry(row)


class AuditLog:
    """The audit log of one registry database (``Registry.audit``)."""

    def __init__(self, database: Database, *, user: str | None = None) -> None:
        self._db = database
        self._user = user

    def append(
        self,
        action: str,
        object: str,
        *,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Record an event that changes nothing else (a refused login) in its own transaction. A change to the
        registry records itself with ``append(session, ...)`` inside its own transaction instead."""
        by = actor if actor is not None else self._user
        return self._db.transaction(
            lambda s: append(s, actor=by, action=action, object=object, details=details), write=True
        )

    def list(self, since: datetime | None = None, limit: int = DEFAULT_LIMIT) -> builtins.list[AuditEntry]:
        """The ``limit`` most recent records (at or after ``since``, if given), oldest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise errors.InvalidInput(f"invalid limit {limit!r}: use an integer >= 1")
        if since is not None and since.tzinfo is None:
            raise errors.InvalidInput("since must carry a time zone")

        def txn(s: Session) -> list[AuditEntry]:
            stmt = _raw().order_by(AuditRecord.seq.desc()).limit(limit)
            if since is not None:
                stmt = stmt.where(AuditRecord.time >= since)
            return [_raw_entry(r) for r in reversed(list(s.execute(stmt)))]

        return self._db.transaction(txn)

    def verify(self) -> AuditCheck:
        """Read the whole chain in seq order, in one snapshot, and find its first problem (if any)."""

        def txn(s: Session) -> AuditCheck:
            if s.get_bind().dialect.name == "postgresql":  # one snapshot for the whole read
                s.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            rows = [_raw_entry(r) for r in s.execute(_raw().order_by(AuditRecord.seq))]
            last = rows[-1] if rows else None
            return AuditCheck(
                records=len(rows),
                head_seq=last.seq if last else 0,
                head_hash=last.hash if last else GENESIS,
                problem=verify(rows),
            )

        return self._db.transaction(txn)


_UNREADABLE_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def _raw() -> Any:
    """The columns with time and details as the database holds them: a row edited into something that is
    not a time or not JSON must be read (and found by verify), not fail the read."""
    return select(
        AuditRecord.seq,
        type_coerce(AuditRecord.time, String).label("time"),
        AuditRecord.actor,
        AuditRecord.action,
        AuditRecord.object,
        type_coerce(AuditRecord.details, String).label("details"),
        AuditRecord.prev_hash,
        AuditRecord.hash,
    )


def _raw_entry(r: Any) -> AuditEntry:
    """An entry from ``_raw`` columns; an unreadable time or details reads as a marker whose hash cannot
    match, so verify reports the record as edited."""
    time, details = r.time, r.details
    if not isinstance(time, datetime):  # SQLite's text; PostgreSQL's driver already gave a datetime
        try:
            time = datetime.fromisoformat(str(time))
        except ValueError:
            time = _UNREADABLE_TIME
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    if isinstance(details, str | bytes):
        try:
            details = orjson.loads(details)
        except orjson.JSONDecodeError:
            details = {"<unreadable>": str(details)}
    if not isinstance(details, dict):
        details = {"<not an object>": details}
    return AuditEntry(r.seq, time.astimezone(UTC), r.actor, r.action, r.object, details, r.prev_hash, r.hash)


def _entry(r: AuditRecord) -> AuditEntry:
    return AuditEntry(
        seq=r.seq,
        time=r.time,
        actor=r.actor,
        action=r.action,
        object=r.object,
        details=dict(r.details or {}),
        prev_hash=r.prev_hash,
        hash=r.hash,
    )
