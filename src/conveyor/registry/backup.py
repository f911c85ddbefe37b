"""Backup and restore of a whole registry: one tar(.gz) holding the rows as database-neutral JSON and every
artifact blob, each blob verified by SHA-256 when written and again before a restore writes anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry.db import MIGRATIONS_DIR
from conveyor.registry.orm import (
    Alias,
    DeploymentEvent,
    DeploymentRevision,
    DeploymentRow,
    Model,
    ModelVersion,
)
from conveyor.registry.service import Registry
from conveyor.registry.store import check_digest

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROWS = "registry.json"
_ARTIFACTS = "artifacts/"
_TABLES = ("models", "versions", "aliases", "deployments", "revisions", "events")
_CHUNK = 1024 * 1024

Progress = Callable[[int, int], None]  # (bytes done, bytes total) over the artifacts


@dataclass(frozen=True)
class BackupSummary:
    """What a backup holds (or a restore wrote): row counts per table and the artifacts."""

    path: str
    schema_revision: str
    models: int
    versions: int
    aliases: int
    deployments: int
    revisions: int
    events: int
    artifacts: int
    artifact_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- backup ----------------------------------------------------------------------------------------------


def backup(registry: Registry, path: Path, progress: Progress | None = None) -> BackupSummary:
    """Write the registry's rows and artifacts to ``path`` (.tar.gz / .tgz / .tar), atomically."""
    path = Path(path)
    gzip = _is_gzip(path)
    db = registry._db  # the backup reads every table in one snapshot, below the service API
    revision, rows = db.transaction(_dump_rows)
    artifacts = _artifacts_of(rows)
    manifest = _manifest(revision, rows, artifacts)
    total = sum(artifacts.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz" if gzip else "w") as tar:
                rows_json = _json_bytes(rows)
                manifest["registry_sha256"] = hashlib.sha256(rows_json).hexdigest()
                _add_bytes(tar, MANIFEST, _json_bytes(manifest))
                _add_bytes(tar, ROWS, rows_json)
                done = 0
                for sha256, size in artifacts.items():
                    _add_blob(registry, tar, sha256, size)
                    done += size
                    if progress:
                        progress(done, total)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return _summary(path, manifest)


def _dump_rows(s: Session) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    if s.get_bind().dialect.name == "postgresql":  # one snapshot for every SELECT below
        s.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    revision = str(s.scalar(text("SELECT version_num FROM alembic_version")))
    models = {m.id: m for m in s.scalars(select(Model).order_by(Model.name))}
    deps = {d.id: d for d in s.scalars(select(DeploymentRow).order_by(DeploymentRow.name))}
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
            for v in s.scalars(select(ModelVersion).order_by(ModelVersion.model_id, ModelVersion.version))
        ],
        "aliases": [
            {"model": models[a.model_id].name, "alias": a.alias, "version": a.version}
            for a in s.scalars(select(Alias).order_by(Alias.model_id, Alias.alias))
        ],
        "deployments": [
            _row(d, name=d.name, current_revision=d.current_revision, updated_at=_iso(d.updated_at))
            for d in deps.values()
        ],
        "revisions": [
            _row(
                r,
                deployment=deps[r.deployment_id].name,
                revision=r.revision,
                spec=r.spec,
                fingerprint=r.fingerprint,
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
                "time": _iso(e.time),
                "kind": e.kind,
                "message": e.message,
            }
            for e in s.scalars(select(DeploymentEvent).order_by(DeploymentEvent.id))
        ],
    }
    return revision, rows


def _row(obj: Any, **fields: Any) -> dict[str, Any]:
    return {**fields, "created_at": _iso(obj.created_at), "created_by": obj.created_by}


def _artifacts_of(rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return {v["sha256"]: v["size_bytes"] for v in sorted(rows["versions"], key=lambda v: str(v["sha256"]))}


def _manifest(
    revision: str, rows: dict[str, list[dict[str, Any]]], artifacts: dict[str, int]
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "conveyor_version": _version(),
        "created_at": _iso(datetime.now(UTC)),
        "schema_revision": revision,
        "counts": {t: len(rows[t]) for t in _TABLES},
        "artifacts": [{"sha256": sha, "size": size} for sha, size in artifacts.items()],
    }


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_blob(registry: Registry, tar: tarfile.TarFile, sha256: str, size: int) -> None:
    blob = registry.store.path(sha256)  # verified by the store
    info = tarfile.TarInfo(_ARTIFACTS + sha256)
    info.size = size
    info.mode = 0o444
    with open(blob, "rb") as f:
        reader = _HashingReader(f)
        try:
            tar.addfile(info, reader)
        except OSError as e:  # shorter than the recorded size
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


# -- restore ---------------------------------------------------------------------------------------------


def restore(registry: Registry, path: Path, progress: Progress | None = None) -> BackupSummary:
    """Restore into an EMPTY registry: verify the whole archive, store the blobs, then one transaction."""
    path = Path(path)
    if not path.is_file():
        raise errors.NotFound(f"backup file {path} does not exist")
    with _reading(path):
        manifest, rows = _verify_archive(path, progress)
    registry._db.transaction(_check_empty)  # again inside the write below: this one spares orphan blobs
    total = sum(int(a["size"]) for a in manifest["artifacts"])
    done = total
    # Blobs first: content-addressed, so blobs left by a failed transaction below are harmless.
    with _reading(path):
        _store_blobs(registry, path, done, total, progress)
    registry._db.transaction(lambda s: _load_rows(s, rows), write=True)
    return _summary(path, manifest)


def _store_blobs(registry: Registry, path: Path, done: int, total: int, progress: Progress | None) -> None:
    for sha256, member in _members(path):
        with tempfile.TemporaryDirectory(prefix="conveyor-restore-") as d:
            tmp = Path(d) / "blob"
            with tmp.open("wb") as out:
                _copy(member, out)
            got, size = registry.store.put_file(tmp)
        if got != sha256:
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
                total = sum(int(a.get("size", 0)) for a in _parse(texts[name], name).get("artifacts", []))
            continue
        digest, size = hashlib.sha256(), 0
        for chunk in iter(lambda: member.read(_CHUNK), b""):  # noqa: B023 - consumed in this iteration
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
    manifest = _parse(texts[MANIFEST], MANIFEST)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise errors.InvalidInput(
            f"backup {path} has format version {manifest.get('format_version')!r}; "
            f"this Conveyor reads version {FORMAT_VERSION}"
        )
    schema, writer = manifest.get("schema_revision"), manifest.get("conveyor_version")
    if str(schema) not in _known_revisions():
        raise errors.InvalidInput(
            f"backup {path} has schema revision {schema!r}, unknown to this Conveyor {_version()}: "
            f"restore it with the Conveyor that wrote it ({writer})"
        )
    if hashlib.sha256(texts[ROWS]).hexdigest() != manifest.get("registry_sha256"):
        raise errors.IntegrityError(f"backup {path} is corrupt: {ROWS} does not match the manifest")
    expected = {str(a["sha256"]): int(a["size"]) for a in manifest.get("artifacts", [])}
    if blobs != expected:
        missing = sorted(set(expected) - set(blobs)) or sorted(set(blobs) - set(expected))
        raise errors.IntegrityError(
            f"backup {path} is incomplete or corrupt: artifacts differ from the manifest ({missing[:1]})"
        )
    rows = _parse(texts[ROWS], ROWS)
    counts = {t: len(rows.get(t, [])) for t in _TABLES}
    if counts != manifest.get("counts"):
        raise errors.IntegrityError(f"backup {path} is corrupt: row counts {counts} differ from the manifest")
    if any(v["sha256"] not in expected for v in rows["versions"]):
        raise errors.IntegrityError(f"backup {path} is incomplete: a version's artifact is not in it")
    return manifest, rows


def _entries(path: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """(name, file) for each member; anything but manifest, rows and artifacts/<sha256> is refused."""
    seen: set[str] = set()
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            name = m.name.removeprefix(_ARTIFACTS) if m.name.startswith(_ARTIFACTS) else m.name
            if m.name.startswith(_ARTIFACTS):
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


def _copy(src: IO[bytes], dst: IO[bytes]) -> None:
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        dst.write(chunk)


def _check_empty(s: Session) -> None:
    present = {
        "models": s.scalar(select(func.count()).select_from(Model)),
        "deployments": s.scalar(select(func.count()).select_from(DeploymentRow)),
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
            name=r["name"], current_revision=r["current_revision"], updated_at=_dt(r["updated_at"])
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
            change_cause=r["change_cause"],
        )
        s.add(_stamp(rev, r))
    s.add_all(
        DeploymentEvent(
            deployment_id=deps[r["deployment"]].id, time=_dt(r["time"]), kind=r["kind"], message=r["message"]
        )
        for r in rows["events"]
    )
    s.flush()


def _stamp(obj: Any, r: dict[str, Any]) -> Any:
    obj.created_at = _dt(r["created_at"])
    obj.created_by = r["created_by"]
    return obj


# -- shared ----------------------------------------------------------------------------------------------


def _known_revisions() -> set[str]:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return {r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()}


def _version() -> str:
    from conveyor import __version__

    return __version__


def _is_gzip(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return True
    if name.endswith(".tar"):
        return False
    raise errors.InvalidInput(f"backup file {path} must end in .tar.gz, .tgz or .tar")


def _summary(path: Path, manifest: dict[str, Any]) -> BackupSummary:
    counts = manifest["counts"]
    return BackupSummary(
        path=str(path),
        schema_revision=str(manifest["schema_revision"]),
        **{t: int(counts[t]) for t in _TABLES},
        artifacts=len(manifest["artifacts"]),
        artifact_bytes=sum(int(a["size"]) for a in manifest["artifacts"]),
    )


def _parse(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as e:
        raise errors.IntegrityError(f"backup {name} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise errors.InvalidInput(f"backup {name} is not a JSON object")
    return value


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode()


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def _dt(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return dt
