"""Signatures of model versions (table ``model_signatures``): store one per version and key, read them back.

The cryptography is security/signing.py's; this module only keeps what it makes, next to the versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry.db import Database
from conveyor.registry.orm import Model, ModelSignature, ModelVersion, utcnow
from conveyor.registry.records import Record
from conveyor.registry.refs import check_name, check_version
from conveyor.security.signing import Signature


@dataclass(frozen=True)
class SignatureInfo(Record):
    """One stored signature: which version, which key, when and by whom."""

    name: str
    version: int
    key_id: str
    signature: str
    signed_at: datetime
    signed_by: str | None

    @property
    def signed(self) -> Signature:
        return Signature(self.key_id, self.signature)


class SignatureStore:
    """Signatures over a migrated registry ``Database`` (``Registry.signatures``)."""

    def __init__(self, database: Database, *, user: str | None = None) -> None:
        self._db = database
        self._user = user

    def add(self, name: str, version: int, signature: Signature) -> SignatureInfo:
        """Store ``signature`` of ``name:version``; a second signature by the same key replaces the first."""
        check_name(name)
        check_version(version)
        insert = postgresql.insert if self._db.is_postgres else sqlite.insert

        def txn(s: Session) -> SignatureInfo:
            row_id = _version_id(s, name, version)
            values = {"signature": signature.signature, "signed_at": utcnow(), "signed_by": self._user}
            stmt = insert(ModelSignature).values(model_version_id=row_id, key_id=signature.key_id, **values)
            s.execute(stmt.on_conflict_do_update(index_elements=["model_version_id", "key_id"], set_=values))
            row = s.scalars(
                select(ModelSignature).where(
                    ModelSignature.model_version_id == row_id, ModelSignature.key_id == signature.key_id
                )
            ).one()
            return _info(name, version, row)

        return self._db.transaction(txn, write=True, retries=2)

    def of_version(self, name: str, version: int) -> list[SignatureInfo]:
        """The version's signatures, by key id (NotFound if the version is not registered)."""
        check_name(name)
        check_version(version)

        def txn(s: Session) -> list[SignatureInfo]:
            row_id = _version_id(s, name, version)
            rows = s.scalars(
                select(ModelSignature)
                .where(ModelSignature.model_version_id == row_id)
                .order_by(ModelSignature.key_id)
            )
            return [_info(name, version, r) for r in rows]

        return self._db.transaction(txn)

    def of_model(self, name: str) -> dict[int, list[SignatureInfo]]:
        """Every signature of the model's versions, by version number (versions without one are absent)."""
        check_name(name)

        def txn(s: Session) -> dict[int, list[SignatureInfo]]:
            stmt = (
                select(ModelVersion.version, ModelSignature)
                .join(ModelSignature, ModelSignature.model_version_id == ModelVersion.id)
                .join(Model, Model.id == ModelVersion.model_id)
                .where(Model.name == name)
                .order_by(ModelVersion.version, ModelSignature.key_id)
            )
            out: dict[int, list[SignatureInfo]] = {}
            for version, row in s.execute(stmt).tuples():
                out.setdefault(version, []).append(_info(name, version, row))
            return out

        return self._db.transaction(txn)


def _version_id(s: Session, name: str, version: int) -> int:
    row_id = s.scalar(
        select(ModelVersion.id)
        .join(Model, Model.id == ModelVersion.model_id)
        .where(Model.name == name, ModelVersion.version == version)
    )
    if row_id is None:
        raise errors.NotFound(f"version {name}:{version} not found")
    return row_id


def _info(name: str, version: int, row: ModelSignature) -> SignatureInfo:
    return SignatureInfo(name, version, row.key_id, row.signature, row.signed_at, row.signed_by)
