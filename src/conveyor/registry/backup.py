"""Back up a whole registry: one tar(.gz) holding the rows as database-neutral JSON and every artifact blob,
each blob verified by SHA-256 as it is written. ``restore`` (conveyor.registry.restore) reads it back.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.files import replacing
from conveyor.registry.archive import (
    ARTIFACTS,
    FORMAT_VERSION,
    MANIFEST,
    ROWS,
    TABLES,
    BackupSummary,
    Progress,
    conveyor_version,
    is_gzip,
    iso,
    iso_or_none,
    json_bytes,
    summary,
)
from conveyor.registry.backup_alerts import dump_alert_rows
from conveyor.registry.backup_edges import dump_edge_rows
from conveyor.registry.backup_rollouts import dump_rollout_rows
from conveyor.registry.backup_validations import dump_validation_rows
from conveyor.registry.orm import (
    Alias,
    ApiToken,
    AuditRecord,
    DeploymentEvent,
    DeploymentRevision,
    DeploymentRow,
    Model,
    ModelSignature,
    ModelVersion,
)
from conveyor.registry.service import Registry
from conveyor.security.encryption import HEADER_BYTES, is_encrypted


def backup(registry: Registry, path: Path, progress: Progress | None = None) -> BackupSummary:
    """Write the registry's rows and artifacts to ``path`` (.tar.gz / .tgz / .tar), atomically."""
    path = Path(path)
    gzip = is_gzip(path)
    db = registry.database  # every table in one snapshot, below the service API
    revision, rows = db.transaction(_dump_rows)
    artifacts = _artifacts_of(rows)
    manifest = _manifest(revision, rows, artifacts)
    total = sum(artifacts.values())
    # A temp file beside FILE, renamed over it once complete: FILE is the old backup or the new one.
    with (
        replacing(path, f"backup {path}") as raw,
        tarfile.open(fileobj=raw, mode="w:gz" if gzip else "w") as tar,
    ):
        rows_json = json_bytes(rows)
        manifest["registry_sha256"] = hashlib.sha256(rows_json).hexdigest()
        _add_bytes(tar, MANIFEST, json_bytes(manifest))
        _add_bytes(tar, ROWS, rows_json)
        done = 0
        for sha256, size in artifacts.items():
            _add_blob(registry, tar, sha256, size)
            done += size
            if progress:
                progress(done, total)
    return summary(path, manifest)


def _dump_rows(s: Session) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    if s.get_bind().dialect.name == "postgresql":  # one snapshot for every SELECT below
        s.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    revision = str(s.scalar(text("SELECT version_num FROM alembic_version")))
    models = {m.id: m for m in s.scalars(select(Model).order_by(Model.name))}
    deps = {d.id: d for d in s.scalars(select(DeploymentRow).order_by(DeploymentRow.name))}
    versions = list(s.scalars(select(ModelVersion).order_by(ModelVersion.model_id, ModelVersion.version)))
    refs = {v.id: (models[v.model_id].name, v.version) for v in versions}
    rows: dict[str, list[dict[str, Any]]] = {
        "models": [
            _row(m, name=m.name, description=m.description, last_version=m.last_version)
            for m in models.values()
        ],
        "versions": [
            _row(
                v,
                model=models[v.model_id].name,
                version=v.version,
                sha256=v.sha256,
                size_bytes=v.size_bytes,
                framework=v.framework,
                signature=v.signature,
                description=v.description,
                tags=v.tags,
                parent_version=v.parent_version,
                metadata=v.meta,
            )
            for v in versions
        ],
        "aliases": [
            {"model": models[a.model_id].name, "alias": a.alias, "version": a.version}
            for a in s.scalars(select(Alias).order_by(Alias.model_id, Alias.alias))
        ],
        "deployments": [
            _row(d, name=d.name, current_revision=d.current_revision, updated_at=iso(d.updated_at))
            for d in deps.values()
        ],
        "revisions": [
            _row(
                r,
                deployment=deps[r.deployment_id].name,
                revision=r.revision,
                spec=r.spec,
                fingerprint=r.fingerprint,
                model=r.model,
                change_cause=r.change_cause,
            )
            for r in s.scalars(
                select(DeploymentRevision).order_by(
                    DeploymentRevision.deployment_id, DeploymentRevision.revision
                )
            )
        ],
        "events": [
            {
                "deployment": deps[e.deployment_id].name,
                "time": iso(e.time),
                "kind": e.kind,
                "message": e.message,
            }
            for e in s.scalars(select(DeploymentEvent).order_by(DeploymentEvent.id))
        ],
        **_security_rows(s, refs),
        **dump_alert_rows(s),
        **dump_rollout_rows(s, deps),
        **dump_validation_rows(s, refs),
        **dump_edge_rows(s),
    }
    return revision, rows


def _security_rows(s: Session, refs: dict[int, tuple[str, int]]) -> dict[str, list[dict[str, Any]]]:
    """Signatures, tokens (their salted hashes: what the table holds) and the audit chain, as stored, so a
    restored log still verifies."""
    signatures = s.scalars(
        select(ModelSignature).order_by(ModelSignature.model_version_id, ModelSignature.key_id)
    )
    return {
        "signatures": [
            {
                "model": refs[g.model_version_id][0],
                "version": refs[g.model_version_id][1],
                "key_id": g.key_id,
                "signature": g.signature,
                "signed_at": iso(g.signed_at),
                "signed_by": g.signed_by,
            }
            for g in signatures
        ],
        "tokens": [
            _row(
                t,
                **{k: getattr(t, k) for k in _TOKEN_FIELDS},
                expires_at=iso_or_none(t.expires_at),
                revoked_at=iso_or_none(t.revoked_at),
                revoked_by=t.revoked_by,
            )
            for t in s.scalars(select(ApiToken).order_by(ApiToken.id))
        ],
        "audit_records": [
            {
                "seq": a.seq,
                "time": iso(a.time),
                "actor": a.actor,
                "action": a.action,
                "object": a.object,
                "details": a.details,
                "prev_hash": a.prev_hash,
                "hash": a.hash,
            }
            for a in s.scalars(select(AuditRecord).order_by(AuditRecord.seq))
        ],
    }


_TOKEN_FIELDS = ("token_id", "name", "role", "models", "rate_limit", "salt", "hash")


def _row(obj: Any, **fields: Any) -> dict[str, Any]:
    return {**fields, "created_at": iso(obj.created_at), "created_by": obj.created_by}


def _artifacts_of(rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return {v["sha256"]: v["size_bytes"] for v in sorted(rows["versions"], key=lambda v: str(v["sha256"]))}


def _manifest(
    revision: str, rows: dict[str, list[dict[str, Any]]], artifacts: dict[str, int]
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "conveyor_version": conveyor_version(),
        "created_at": iso(datetime.now(UTC)),
        "schema_revision": revision,
        "counts": {t: len(rows[t]) for t in TABLES},
        "artifacts": [{"sha256": sha, "size": size} for sha, size in artifacts.items()],
    }


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_blob(registry: Registry, tar: tarfile.TarFile, sha256: str, size: int) -> None:
    blob = registry.store.path(sha256)  # verified by the store
    info = tarfile.TarInfo(ARTIFACTS + sha256)
    info.size = size
    info.mode = 0o444
    with open(blob, "rb") as raw:
        f: IO[bytes] = raw
        if is_encrypted(raw.read(HEADER_BYTES)):  # the archive holds the model file; restore encrypts again
            f = io.BytesIO(registry.store.read_bytes(sha256))
        else:
            raw.seek(0)
        reader = _HashingReader(f)
        try:
            tar.addfile(info, reader)
        except OSError as e:  # shorter than the recorded size (a full disk is not the blob's fault)
            if errors.is_disk_full(e):
                raise
            raise errors.IntegrityError(f"artifact {sha256} is truncated in the store: {e}") from None
    if reader.digest.hexdigest() != sha256 or reader.size != size:
        raise errors.IntegrityError(f"artifact {sha256} changed while being backed up (size {reader.size})")


class _HashingReader(io.RawIOBase):
    """A read-only file that hashes what passes through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data
