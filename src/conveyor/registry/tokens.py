"""API tokens in the registry database (``Registry.tokens``): create (the token is returned once, only its
salted hash is stored), list, revoke, and the records verifiers load (security/tokens.py).
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry.audit import append
from conveyor.registry.db import Database
from conveyor.registry.orm import ApiToken, utcnow
from conveyor.registry.records import Record
from conveyor.security.tokens import TokenRecord, check_models_glob, check_role, new_token, unix

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


@dataclass(frozen=True)
class TokenInfo(Record):
    """A token as `tokens list` shows it: never the token, never its hash."""

    id: str
    name: str
    role: str
    models: str | None
    rate_limit: float | None
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utcnow():
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "state": self.state}


def check_token_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise errors.InvalidInput(
            f"invalid token name {name!r}: 1-128 letters, digits, '_', '.', '@' or '-', starting with a "
            "letter or digit"
        )
    return name


class TokenStore:
    """Tokens over a migrated registry ``Database``; every change also appends to the audit log."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def create(
        self,
        name: str,
        role: str,
        *,
        models: str | None = None,
        expires_in_s: float | None = None,
        rate_limit: float | None = None,
        by: str | None = None,
    ) -> tuple[str, TokenInfo]:
        """A new token and its info; the token itself is not stored and cannot be shown again."""
        check_token_name(name)
        role = check_role(role)
        models = check_models_glob(models)
        if models is not None and role != "predictor":
            raise errors.InvalidInput("--models applies to predictor tokens only")
        if rate_limit is not None and not (0 < rate_limit <= 1_000_000):
            raise errors.InvalidInput(f"invalid rate limit {rate_limit}: requests per second, above 0")
        expires_at = None
        if expires_in_s is not None:
            if expires_in_s <= 0:
                raise errors.InvalidInput("expiry must be in the future")
            expires_at = utcnow() + timedelta(seconds=expires_in_s)
        token, token_id, salt, digest = new_token()

        def txn(s: Session) -> TokenInfo:
            live = s.scalar(select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None)))
            if live is not None:
                raise errors.Conflict(
                    f"a live token named {name!r} exists; revoke it first or pick another name"
                )
            row = ApiToken(
                token_id=token_id,
                name=name,
                role=role,
                models=models,
                rate_limit=rate_limit,
                salt=salt,
                hash=digest,
                created_at=utcnow(),
                created_by=by,
                expires_at=expires_at,
            )
            s.add(row)
            s.flush()
            details = {"id": token_id, "role": role, "models": models, "rateLimit": rate_limit}
            if expires_at is not None:
                details["expiresAt"] = expires_at.isoformat()
            _audit(s, by, "token.create", name, details)
            return _info(row)

        return token, self._db.transaction(txn, write=True)

    def revoke(self, name_or_id: str, *, by: str | None = None) -> TokenInfo:
        """Revoke the live token of that name (or id); NotFound when there is none."""

        def txn(s: Session) -> TokenInfo:
            row = s.scalar(
                select(ApiToken).where(ApiToken.name == name_or_id, ApiToken.revoked_at.is_(None))
            ) or s.scalar(select(ApiToken).where(ApiToken.token_id == name_or_id))
            if row is None:
                raise errors.NotFound(f"no live token named {name_or_id!r} (see `conveyor tokens list`)")
            if row.revoked_at is not None:
                raise errors.Conflict(f"token {row.name!r} ({row.token_id}) is already revoked")
            row.revoked_at = utcnow()
            row.revoked_by = by
            _audit(s, by, "token.revoke", row.name, {"id": row.token_id, "role": row.role})
            return _info(row)

        return self._db.transaction(txn, write=True)

    def list(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        def txn(s: Session) -> list[TokenInfo]:
            q = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
            if not include_revoked:
                q = q.where(ApiToken.revoked_at.is_(None))
            return [_info(r) for r in s.scalars(q)]

        return self._db.transaction(txn)

    def records(self) -> builtins.list[TokenRecord]:
        """What verifiers check against: every token, revoked ones marked (so the answer can say so)."""

        def txn(s: Session) -> list[TokenRecord]:
            return [
                TokenRecord(
                    token_id=r.token_id,
                    name=r.name,
                    role=r.role,
                    salt=r.salt,
                    hash=r.hash,
                    models=r.models,
                    rate_limit=r.rate_limit,
                    expires_at=unix(r.expires_at),
                    revoked=r.revoked_at is not None,
                )
                for r in s.scalars(select(ApiToken).order_by(ApiToken.id))
            ]

        return self._db.transaction(txn)


def _info(r: ApiToken) -> TokenInfo:
    return TokenInfo(
        id=r.token_id,
        name=r.name,
        role=r.role,
        models=r.models,
        rate_limit=r.rate_limit,
        created_at=r.created_at,
        created_by=r.created_by,
        expires_at=r.expires_at,
        revoked_at=r.revoked_at,
        revoked_by=r.revoked_by,
    )


def _audit(s: Session, actor: str | None, action: str, obj: str, details: dict[str, Any]) -> None:
    """The change's audit record, in the change's own transaction (both commit or neither)."""
    append(s, actor=actor, action=action, object=obj, details=details)
