"""Restore a backup into an empty registry: verify the whole archive first, then store the blobs, then one
transaction for the rows, so a bad archive changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry import refs
from conveyor.registry.archive import (
    ARTIFACTS,
    CHUNK,
    FORMAT_VERSION,
    MANIFEST,
    ROWS,
    TABLES,
    BackupSummary,
    Progress,
    conveyor_version,
    known_revisions,
    parse_json,
    parse_time,
    summary,
    time_or_none,
)
from conveyor.registry.backup_alerts import check_alert_rows, insert_alert_rows
from conveyor.registry.backup_edges import check_edge_rows, insert_edge_rows
from conveyor.registry.backup_rollouts import check_rollout_rows, insert_rollout_rows
from conveyor.registry.backup_validations import check_validation_rows, insert_validation_rows
from conveyor.registry.orm import (
    AlertRow,
    AlertRuleRow,
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
from conveyor.registry.store import check_digest


def restore(registry: Registry, path: Path, progress: Progress | None = None) -> BackupSummary:
    """Restore into an EMPTY registry: verify the whole archive, store the blobs, then one transaction."""
    path = Path(path)
    if not path.is_file():
        raise errors.NotFound(f"backup file {path} does not exist")
    with _reading(path):
        manifest, rows = _verify_archive(path, progress)
    registry.database.transaction(_check_empty)  # again inside the write below: this one spares orphan blobs
    total = sum(int(a["size"]) for a in manifest["artifacts"])
    done = total
    # Blobs first (a row must never name a missing blob), then the rows; if anything fails (a full disk, a
    # changed archive), the blobs this restore wrote go again, so a failed restore leaves the store as it was.
    written: list[str] = []
    try:
        with _reading(path):
            _store_blobs(registry, path, done, total, progress, written)
        registry.database.transaction(lambda s: _load_rows(s, rows), write=True)
    except BaseException:
        with contextlib.suppress(Exception):  # the restore's error is the one to report
            registry.discard_unreferenced(written)
        raise
    return summary(path, manifest)


def _store_blobs(
    registry: Registry, path: Path, done: int, total: int, progress: Progress | None, written: list[str]
) -> None:
    """Copy each artifact into the store, adding to ``written`` the digests that were not there before."""
    for sha256, member in _members(path):
        if not registry.store.exists(sha256):
            written.append(sha256)  # before the put: a put that fails midway cleans up after itself
        got, size = registry.store.put_stream(member)
        if got != sha256:
            written.append(got)
            raise errors.IntegrityError(f"backup {path} changed during the restore: artifact {sha256}")
        done += size
        if progress:
            progress(done, 2 * total)


def _verify_archive(path: Path, progress: Progress | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read everything once; check manifest, row counts and every blob's size and digest. Writes nothing."""
    texts: dict[str, bytes] = {}
    blobs: dict[str, int] = {}
    done = 0
    total = 0
    for name, member in _entries(path):
        if name in (MANIFEST, ROWS):
            texts[name] = member.read()
            if name == MANIFEST:
                total = sum(int(a.get("size", 0)) for a in parse_json(texts[name], name).get("artifacts", []))
            continue
        digest, size = hashlib.sha256(), 0
        for chunk in iter(lambda: member.read(CHUNK), b""):  # noqa: B023 - consumed in this iteration
            digest.update(chunk)
            size += len(chunk)
            done += len(chunk)
            if progress:
                progress(done, 2 * total)
        if digest.hexdigest() != name:
            raise errors.IntegrityError(
                f"backup {path} is corrupt: artifact {name} has sha256 {digest.hexdigest()}; nothing restored"
            )
        blobs[name] = size
    for name in (MANIFEST, ROWS):
        if name not in texts:
            raise errors.InvalidInput(f"{path} is not a Conveyor backup: {name} is missing")
    manifest = parse_json(texts[MANIFEST], MANIFEST)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise errors.InvalidInput(
            f"backup {path} has format version {manifest.get('format_version')!r}; "
            f"this Conveyor reads version {FORMAT_VERSION}"
        )
    schema, writer = manifest.get("schema_revision"), manifest.get("conveyor_version")
    if str(schema) not in known_revisions():
        raise errors.InvalidInput(
            f"backup {path} has schema revision {schema!r}, unknown to this Conveyor {conveyor_version()}: "
            f"restore it with the Conveyor that wrote it ({writer})"
        )
    if hashlib.sha256(texts[ROWS]).hexdigest() != manifest.get("registry_sha256"):
        raise errors.IntegrityError(f"backup {path} is corrupt: {ROWS} does not match the manifest")
    expected = _manifest_artifacts(path, manifest)
    if blobs != expected:
        missing = sorted(set(expected) - set(blobs)) or sorted(set(blobs) - set(expected))
        raise errors.IntegrityError(
            f"backup {path} is incomplete or corrupt: artifacts differ from the manifest ({missing[:1]})"
        )
    rows = parse_json(texts[ROWS], ROWS)
    counts = {t: len(rows.get(t, [])) for t in TABLES}
    declared = manifest.get("counts")
    # An archive of schema 0003 or older has no signatures, tokens or audit records, one of 0004 or older
    # no alert rules or alerts, one of 0005 or older no rollouts, one of 0006 or older no validations: absent
    # counts as 0.
    if not isinstance(declared, dict) or set(declared) - set(TABLES) or counts != _counts(declared):
        raise errors.IntegrityError(f"backup {path} is corrupt: row counts {counts} differ from the manifest")
    _check_rows(path, rows)
    if any(v["sha256"] not in expected for v in rows["versions"]):
        raise errors.IntegrityError(f"backup {path} is incomplete: a version's artifact is not in it")
    return manifest, rows


def _counts(declared: dict[str, Any]) -> dict[str, Any]:
    return {t: declared.get(t, 0) for t in TABLES}


def _malformed(path: Path, what: str) -> errors.InvalidInput:
    return errors.InvalidInput(f"backup {path} is malformed: {what}; nothing restored")


def _manifest_artifacts(path: Path, manifest: dict[str, Any]) -> dict[str, int]:
    """sha256 -> size of the manifest's artifacts, each checked for shape."""
    out: dict[str, int] = {}
    artifacts = manifest.get("artifacts", [])
    if not isinstance(artifacts, list):
        raise _malformed(path, "the manifest's artifacts are not a list")
    for i, a in enumerate(artifacts):
        digest, size = (a.get("sha256"), a.get("size")) if isinstance(a, dict) else (None, None)
        if not isinstance(digest, str) or len(digest) != 64 or not isinstance(size, int) or size < 0:
            raise _malformed(path, f"manifest artifacts[{i}] needs a sha256 and a size, got {a!r}"[:300])
        out[digest] = size
    return out


def _check_rows(path: Path, rows: dict[str, Any]) -> None:
    """The rows obey the registry's own rules (names, versions, aliases, signatures), so a restore never
    writes what the registry would refuse: checksums only prove that nobody changed the archive."""
    try:
        names = [refs.check_name(r["name"]) for r in rows["models"]]
        if len(set(names)) != len(names):
            raise errors.InvalidInput("a model name appears twice")
        versions: set[tuple[str, int]] = set()
        for r in rows["versions"]:
            if r["model"] not in names:
                raise errors.InvalidInput(
                    f"version {r['version']!r} belongs to an unknown model {r['model']!r}"
                )
            key = (r["model"], refs.check_version(r["version"]))
            if key in versions:
                raise errors.InvalidInput(f"version {key[0]}:{key[1]} appears twice")
            versions.add(key)
            sig = r["signature"]
            lists = isinstance(sig, dict) and all(isinstance(sig.get(k), list) for k in ("inputs", "outputs"))
            if not lists:
                raise errors.InvalidInput(f"version {key[0]}:{key[1]} has no valid signature")
        for r in rows["aliases"]:
            refs.check_alias(r["alias"])
            if (r["model"], r["version"]) not in versions:
                raise errors.InvalidInput(
                    f"alias {r['alias']!r} points at a missing version {r['model']}:{r['version']}"
                )
        deployments = {r["name"] for r in rows["deployments"]}
        for r in [*rows["revisions"], *rows["events"]]:
            if r["deployment"] not in deployments:
                raise errors.InvalidInput(f"a revision or event of an unknown deployment {r['deployment']!r}")
        for r in rows.get("signatures", []):
            if (r["model"], r["version"]) not in versions:
                raise errors.InvalidInput(f"a signature of a missing version {r['model']}:{r['version']}")
        seqs = [r["seq"] for r in rows.get("audit_records", [])]
        if len(set(seqs)) != len(seqs):
            raise errors.InvalidInput("an audit record's seq appears twice")
        check_alert_rows(rows)
        check_rollout_rows(rows, deployments)
        check_validation_rows(rows, versions)
        check_edge_rows(rows)
    except errors.InvalidInput as exc:
        raise _malformed(path, exc.message) from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise _malformed(path, f"{type(exc).__name__}: {exc}") from None


def _entries(path: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """(name, file) for each member; anything but manifest, rows and artifacts/<sha256> is refused."""
    seen: set[str] = set()
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            name = m.name.removeprefix(ARTIFACTS) if m.name.startswith(ARTIFACTS) else m.name
            if m.name.startswith(ARTIFACTS):
                check_digest(name)
            elif name not in (MANIFEST, ROWS):
                raise errors.InvalidInput(f"{path} is not a Conveyor backup: unexpected entry {m.name!r}")
            if not m.isfile() or name in seen:
                raise errors.InvalidInput(f"{path} is not a Conveyor backup: bad entry {m.name!r}")
            seen.add(name)
            f = tar.extractfile(m)
            assert f is not None  # a regular file
            yield name, f


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A damaged archive (bad gzip, short tar) becomes one IntegrityError."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise errors.IntegrityError(
            f"backup {path} is truncated or corrupt ({e}); nothing restored"
        ) from None


def _members(path: Path) -> Iterator[tuple[str, IO[bytes]]]:
    return ((n, f) for n, f in _entries(path) if n not in (MANIFEST, ROWS))


def _check_empty(s: Session) -> None:
    present = {
        "models": s.scalar(select(func.count()).select_from(Model)),
        "deployments": s.scalar(select(func.count()).select_from(DeploymentRow)),
        "tokens": s.scalar(select(func.count()).select_from(ApiToken)),
        "audit records": s.scalar(select(func.count()).select_from(AuditRecord)),
        "alert rules": s.scalar(select(func.count()).select_from(AlertRuleRow)),
        "alerts": s.scalar(select(func.count()).select_from(AlertRow)),
    }
    if any(present.values()):
        what = ", ".join(f"{n} {t}" for t, n in present.items() if n)
        raise errors.Conflict(
            f"restore needs an empty registry, but this one holds {what}; restore into a new CONVEYOR_HOME "
            "or database (merging into a used registry is not supported)"
        )


def _load_rows(s: Session, rows: dict[str, Any]) -> None:
    _check_empty(s)
    try:
        _insert_rows(s, rows)
    except (KeyError, TypeError, ValueError) as e:
        raise errors.InvalidInput(f"backup {ROWS} is malformed: {type(e).__name__}: {e}") from None


def _insert_rows(s: Session, rows: dict[str, Any]) -> None:
    models: dict[str, Model] = {}
    for r in rows["models"]:
        models[r["name"]] = m = Model(
            name=r["name"], description=r["description"], last_version=r["last_version"]
        )
        _stamp(m, r)
    deps: dict[str, DeploymentRow] = {}
    for r in rows["deployments"]:
        deps[r["name"]] = d = DeploymentRow(
            name=r["name"], current_revision=r["current_revision"], updated_at=parse_time(r["updated_at"])
        )
        _stamp(d, r)
    s.add_all([*models.values(), *deps.values()])
    s.flush()  # ids for the rows below
    for r in rows["versions"]:
        v = ModelVersion(
            model_id=models[r["model"]].id,
            **{k: r[k] for k in ("version", "sha256", "size_bytes", "framework", "signature", "description")},
            tags=r["tags"],
            parent_version=r["parent_version"],
            meta=r["metadata"],
        )
        s.add(_stamp(v, r))
    s.flush()  # aliases reference (model_id, version)
    s.add_all(
        Alias(model_id=models[r["model"]].id, alias=r["alias"], version=r["version"]) for r in rows["aliases"]
    )
    for r in rows["revisions"]:
        rev = DeploymentRevision(
            deployment_id=deps[r["deployment"]].id,
            revision=r["revision"],
            spec=r["spec"],
            fingerprint=r["fingerprint"],
            model=r.get("model"),  # absent in backups of schema 0002
            change_cause=r["change_cause"],
        )
        s.add(_stamp(rev, r))
    s.add_all(
        DeploymentEvent(
            deployment_id=deps[r["deployment"]].id,
            time=parse_time(r["time"]),
            kind=r["kind"],
            message=r["message"],
        )
        for r in rows["events"]
    )
    s.flush()
    _insert_security_rows(s, rows, models)
    insert_alert_rows(s, rows)
    insert_rollout_rows(s, rows, deps)


def _insert_security_rows(s: Session, rows: dict[str, Any], models: dict[str, Model]) -> None:
    """Signatures, tokens and the audit chain (absent from archives of schema 0003 and older)."""
    version_ids = {(m.name, v.version): v.id for m in models.values() for v in _versions_of(s, m)}
    s.add_all(
        ModelSignature(
            model_version_id=version_ids[(r["model"], r["version"])],
            key_id=r["key_id"],
            signature=r["signature"],
            signed_at=parse_time(r["signed_at"]),
            signed_by=r["signed_by"],
        )
        for r in rows.get("signatures", [])
    )
    for r in rows.get("tokens", []):
        token = ApiToken(
            **{k: r[k] for k in ("token_id", "name", "role", "models", "rate_limit", "salt", "hash")},
            expires_at=time_or_none(r["expires_at"]),
            revoked_at=time_or_none(r["revoked_at"]),
            revoked_by=r["revoked_by"],
        )
        s.add(_stamp(token, r))
    s.add_all(  # exactly as stored: the chain verifies after a restore as it did before the backup
        AuditRecord(
            seq=r["seq"],
            time=parse_time(r["time"]),
            **{k: r[k] for k in ("actor", "action", "object", "details", "prev_hash", "hash")},
        )
        for r in rows.get("audit_records", [])
    )
    s.flush()
    insert_validation_rows(s, rows, version_ids)
    insert_edge_rows(s, rows)


def _versions_of(s: Session, model: Model) -> list[ModelVersion]:
    return list(s.scalars(select(ModelVersion).where(ModelVersion.model_id == model.id)))


def _stamp(obj: Any, r: dict[str, Any]) -> Any:
    obj.created_at = parse_time(r["created_at"])
    obj.created_by = r["created_by"]
    return obj
