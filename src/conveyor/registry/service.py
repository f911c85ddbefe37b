"""The registry service: register immutable model versions, resolve references, move aliases, edit tags.

Numbers are allocated per model under a lock (PostgreSQL: the model row FOR UPDATE; SQLite: BEGIN IMMEDIATE)
from a counter on the model row, so a number is never handed out twice, even after its version is deleted.
Deleting the last version keeps the model row (and its counter); ``delete_model`` removes an empty model.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from conveyor import errors
from conveyor.registry import audit
from conveyor.registry.alerts import AlertStore
from conveyor.registry.audit import AuditLog
from conveyor.registry.db import Database
from conveyor.registry.deployments import DeploymentStore
from conveyor.registry.orm import Alias, DeploymentRevision, DeploymentRow, Model, ModelVersion, utcnow
from conveyor.registry.records import ModelInfo, VersionInfo
from conveyor.registry.refs import check_alias, check_name, check_version, parse_ref
from conveyor.registry.rollouts import RolloutStore
from conveyor.registry.signatures import SignatureInfo, SignatureStore
from conveyor.registry.store import ArtifactStore, LocalArtifactStore
from conveyor.registry.tokens import TokenStore
from conveyor.security.encryption import cipher_from
from conveyor.security.signing import PublicKey, policy_problem, sign
from conveyor.settings import Settings

if TYPE_CHECKING:
    from conveyor.registry.edges import EdgeStore
    from conveyor.registry.leases import LeaseStore
    from conveyor.registry.validations import ValidationStore

PRODUCTION = "production"
_REGISTER_RETRIES = 8

Artifact = Path | str | bytes


class Registry:
    """Models, their immutable versions, aliases and tags, over one database and one artifact store."""

    def __init__(self, url: str, store: ArtifactStore, *, user: str | None = None) -> None:
        self._db = Database(url)
        self._store = store
        self._user = user
        try:
            self._db.upgrade()
        except BaseException:
            self._db.dispose()
            raise

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        """SQLite (or ``database_url``) and a local artifact store under ``settings.home`` (or the S3 store
        of ``artifacts_url``)."""
        settings.home.mkdir(parents=True, exist_ok=True)
        cipher = cipher_from(settings.artifact_key, settings.artifact_key_file)
        store: ArtifactStore = LocalArtifactStore(settings.artifacts_dir, cipher)
        if settings.artifacts_url is not None:
            from conveyor.registry.s3store import S3ArtifactStore

            cache = LocalArtifactStore(settings.artifacts_cache_dir, cipher)
            endpoint, region = settings.s3_endpoint_url, settings.s3_region
            store = S3ArtifactStore(
                settings.artifacts_url,
                cache,
                endpoint_url=endpoint,
                region=region,
                cache_bytes=settings.artifact_cache_mb << 20,
                cache_idle_s=settings.artifact_cache_idle_s,
            )
        return cls(settings.effective_database_url, store, user=settings.user)

    @property
    def store(self) -> ArtifactStore:
        return self._store

    @property
    def deployments(self) -> DeploymentStore:
        """Deployments and their revisions, on this registry's database (one engine, one migration)."""
        return DeploymentStore(self._db, user=self._user)

    @property
    def tokens(self) -> TokenStore:
        """API tokens (salted hashes) on this registry's database."""
        return TokenStore(self._db)

    @property
    def alerts(self) -> AlertStore:
        """Applied AlertRule resources and the state of every alert, on this registry's database."""
        return AlertStore(self._db)

    @property
    def rollouts(self) -> RolloutStore:
        """Rollouts of deployments and their events, on this registry's database."""
        return RolloutStore(self._db, user=self._user)

    @property
    def leases(self) -> LeaseStore:
        """Named leases with an expiry on the database's clock: the control planes' leader election."""
        from conveyor.registry.leases import LeaseStore

        return LeaseStore(self._db)

    @property
    def validations(self) -> ValidationStore:
        """Verdicts of ``conveyor validate`` on versions (each sets the version's ``validated`` tag)."""
        from conveyor.registry.validations import ValidationStore

        return ValidationStore(self._db, user=self._user)

    @property
    def edges(self) -> EdgeStore:
        """Edge nodes following deployments: their registrations and latest heartbeats (docs/edge.md)."""
        from conveyor.registry.edges import EdgeStore

        return EdgeStore(self._db, user=self._user)

    @property
    def audit(self) -> AuditLog:
        """The hash-chained audit log on this registry's database: every change above appends to it."""
        return AuditLog(self._db, user=self._user)

    @property
    def database(self) -> Database:
        """The migrated database under this registry, for whole-registry work (backup, restore)."""
        return self._db

    @property
    def url(self) -> str:
        """The database URL with any password masked."""
        return self._db.display_url

    def close(self) -> None:
        self._db.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writing versions --------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        artifact: Artifact,
        *,
        signature: dict[str, Any],
        framework: str,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        aliases: list[str] | None = None,
        parent_version: int | None = None,
        created_by: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> VersionInfo:
        """Store ``artifact`` and record it as the model's next version (the model is created if new)."""
        check_name(name)
        alias_list = sorted({check_alias(a) for a in aliases or []})
        tags = _check_tags(tags or {})
        signature = _check_json("signature", signature)
        metadata = _check_json("metadata", metadata or {})
        if not isinstance(framework, str) or not framework:
            raise errors.InvalidInput("framework must be a non-empty string (e.g. 'onnx', 'sklearn')")
        if parent_version is not None:
            check_version(parent_version)
        by = created_by if created_by is not None else self._user
        # Stored before the transaction (the blob must exist once the row does); removed again below if the
        # transaction fails, unless another version uses the same bytes.
        sha256, size = self._put(artifact)

        def txn(s: Session) -> VersionInfo:
            model = self._lock_or_create_model(s, name, description, by)
            if parent_version is not None and self._find_version(s, model.id, parent_version) is None:
                raise errors.NotFound(f"parent version {name}:{parent_version} not found")
            model.last_version += 1
            row = ModelVersion(
                model_id=model.id,
                version=model.last_version,
                sha256=sha256,
                size_bytes=size,
                framework=framework,
                signature=signature,
                description=description,
                tags=tags,
                parent_version=parent_version,
                created_at=utcnow(),
                created_by=by,
                meta=metadata,
            )
            s.add(row)
            s.flush()
            self._lock_artifact(s, sha256)
            if not self._store.exists(sha256):  # a concurrent delete_version removed the shared blob
                self._put(artifact)
            for alias in alias_list:
                self._upsert_alias(s, model.id, alias, row.version)
            details = {"sha256": sha256, "size_bytes": size, "framework": framework, "aliases": alias_list}
            if parent_version is not None:
                details["parent_version"] = parent_version
            ref = f"{name}:{row.version}"
            audit.append(s, actor=by, action="model.register", object=ref, details=details)
            return _version_info(name, row, alias_list)

        try:
            return self._db.transaction(txn, write=True, retries=_REGISTER_RETRIES)
        except BaseException:
            with contextlib.suppress(Exception):  # the transaction's error is the one to report
                self.discard_unreferenced([sha256])
            raise

    def delete_version(self, name: str, version: int, *, user: str | None = None) -> None:
        """Delete one version; refused (Conflict) while an alias points at it. Its blob goes when unshared."""
        check_name(name)
        check_version(version)
        by = user if user is not None else self._user

        def txn(s: Session) -> None:
            model = self._model(s, name, lock=True)
            row = self._version(s, model, version)
            aliased = sorted(
                s.scalars(select(Alias.alias).where(Alias.model_id == model.id, Alias.version == version))
            )
            if aliased:
                raise errors.Conflict(
                    f"cannot delete {name}:{version}: alias(es) {', '.join(aliased)} point at it; "
                    "move or remove them first",
                    aliases=aliased,
                )
            deployed = _deployments_running(s, f"{name}:{version}")
            if deployed:
                raise errors.Conflict(
                    f"cannot delete {name}:{version}: deployment(s) {', '.join(deployed)} run it; "
                    "apply another version or delete them first",
                    deployments=deployed,
                )
            sha256 = row.sha256
            s.delete(row)
            s.flush()
            self._delete_blob_if_unused(s, sha256)
            details = {"sha256": sha256}
            audit.append(s, actor=by, action="version.delete", object=f"{name}:{version}", details=details)

        self._db.transaction(txn, write=True)

    def discard_unreferenced(self, digests: list[str]) -> None:
        """Remove the blobs of ``digests`` that no version references: what a failed write stored.
        Reads and deletes only, so it works on a full disk."""

        def txn(s: Session) -> None:
            for sha256 in digests:
                self._delete_blob_if_unused(s, sha256)

        self._db.transaction(txn, write=True)

    def delete_model(self, name: str, *, user: str | None = None) -> None:
        """Delete a model that has no versions left (Conflict otherwise)."""
        check_name(name)
        by = user if user is not None else self._user

        def txn(s: Session) -> None:
            model = self._model(s, name, lock=True)
            count = s.scalar(
                select(func.count()).select_from(ModelVersion).where(ModelVersion.model_id == model.id)
            )
            if count:
                raise errors.Conflict(f"cannot delete model {name!r}: it still has {count} version(s)")
            s.delete(model)
            s.flush()
            audit.append(s, actor=by, action="model.delete", object=name)

        self._db.transaction(txn, write=True)

    # -- aliases and tags --------------------------------------------------------------------------------

    def set_alias(self, name: str, version: int, alias: str, *, user: str | None = None) -> VersionInfo:
        """Point ``alias`` at ``name:version``, moving it in one transaction if it pointed elsewhere."""
        check_name(name)
        check_version(version)
        check_alias(alias)
        by = user if user is not None else self._user

        def txn(s: Session) -> VersionInfo:
            model = self._model(s, name)
            row = self._version(s, model, version)
            before = self._alias_version(s, model.id, alias)
            self._upsert_alias(s, model.id, alias, version)
            details = {"version": version, "previous_version": before}
            audit.append(s, actor=by, action="alias.set", object=f"{name}@{alias}", details=details)
            return _version_info(name, row, self._aliases_of(s, model.id, version))

        return self._db.transaction(txn, write=True, retries=2)

    def remove_alias(self, name: str, alias: str, *, user: str | None = None) -> None:
        check_name(name)
        check_alias(alias)
        by = user if user is not None else self._user

        def txn(s: Session) -> None:
            model = self._model(s, name)
            before = self._alias_version(s, model.id, alias)
            result = s.execute(delete(Alias).where(Alias.model_id == model.id, Alias.alias == alias))
            if not getattr(result, "rowcount", 0):
                raise errors.NotFound(f"alias {name}@{alias} not found")
            details = {"previous_version": before}
            audit.append(s, actor=by, action="alias.remove", object=f"{name}@{alias}", details=details)

        self._db.transaction(txn, write=True)

    def set_tags(
        self, name: str, version: int, tags: dict[str, str], *, user: str | None = None
    ) -> VersionInfo:
        """Replace the version's tags (tags are mutable metadata; the version's content is not)."""
        check_name(name)
        check_version(version)
        new_tags = _check_tags(tags)
        by = user if user is not None else self._user

        def txn(s: Session) -> VersionInfo:
            model = self._model(s, name)
            row = self._version(s, model, version)
            details = {"tags": new_tags, "previous_tags": dict(row.tags or {})}
            row.tags = new_tags
            s.flush()
            audit.append(s, actor=by, action="version.tags", object=f"{name}:{version}", details=details)
            return _version_info(name, row, self._aliases_of(s, model.id, version))

        return self._db.transaction(txn, write=True)

    # -- reading -----------------------------------------------------------------------------------------

    def list_models(self) -> list[ModelInfo]:
        def txn(s: Session) -> list[ModelInfo]:
            stats = {
                mid: (count, latest)
                for mid, count, latest in s.execute(
                    select(ModelVersion.model_id, func.count(), func.max(ModelVersion.version)).group_by(
                        ModelVersion.model_id
                    )
                ).tuples()
            }
            aliases: dict[int, dict[str, int]] = {}
            for a in s.scalars(select(Alias)):
                aliases.setdefault(a.model_id, {})[a.alias] = a.version
            out = []
            for m in s.scalars(select(Model).order_by(Model.name)):
                count, latest = stats.get(m.id, (0, None))
                out.append(
                    ModelInfo(
                        name=m.name,
                        description=m.description,
                        latest_version=latest,
                        version_count=count,
                        aliases=dict(sorted(aliases.get(m.id, {}).items())),
                        created_at=m.created_at,
                        created_by=m.created_by,
                    )
                )
            return out

        return self._db.transaction(txn)

    def list_versions(self, name: str) -> list[VersionInfo]:
        check_name(name)

        def txn(s: Session) -> list[VersionInfo]:
            model = self._model(s, name)
            by_version: dict[int, list[str]] = {}
            for a in s.scalars(select(Alias).where(Alias.model_id == model.id).order_by(Alias.alias)):
                by_version.setdefault(a.version, []).append(a.alias)
            rows = s.scalars(
                select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.version)
            )
            return [_version_info(name, r, by_version.get(r.version, [])) for r in rows]

        return self._db.transaction(txn)

    def get_version(self, name: str, version: int) -> VersionInfo:
        check_name(name)
        check_version(version)

        def txn(s: Session) -> VersionInfo:
            model = self._model(s, name)
            row = self._version(s, model, version)
            return _version_info(name, row, self._aliases_of(s, model.id, version))

        return self._db.transaction(txn)

    def resolve(self, ref: str) -> VersionInfo:
        """``NAME`` (the ``production`` alias if set, else the latest), ``NAME:VERSION`` or ``NAME@ALIAS``."""
        r = parse_ref(ref)

        def txn(s: Session) -> VersionInfo:
            model = self._model(s, r.name)
            version = r.version
            if version is None:
                alias = r.alias or PRODUCTION
                version = s.scalar(
                    select(Alias.version).where(Alias.model_id == model.id, Alias.alias == alias)
                )
                if version is None and r.alias is not None:
                    raise errors.NotFound(f"alias {r.name}@{r.alias} not found")
            if version is None:
                version = s.scalar(
                    select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
                )
                if version is None:
                    raise errors.NotFound(f"model {r.name!r} has no versions")
            row = self._version(s, model, version)
            return _version_info(r.name, row, self._aliases_of(s, model.id, version))

        return self._db.transaction(txn)

    def artifact_bytes(self, v: VersionInfo) -> bytes:
        """The version's artifact, verified against its SHA-256 (IntegrityError naming the version if not)."""
        with _naming(v):
            return self._store.read_bytes(v.sha256)

    def artifact_path(self, v: VersionInfo) -> Path:
        """A local file with the version's artifact, verified against its SHA-256 (IntegrityError if not)."""
        with _naming(v):
            return self._store.path(v.sha256)

    def artifact_location(self, v: VersionInfo) -> Path:
        """Where the version's artifact lies, NOT verified (maybe missing): for a loader that verifies what it
        reads."""
        return self._store.location(v.sha256)

    # -- signatures (security/signing.py) ----------------------------------------------------------------

    @property
    def signatures(self) -> SignatureStore:
        """Ed25519 signatures of versions, on this registry's database."""
        return SignatureStore(self._db, user=self._user)

    def sign_version(self, v: VersionInfo, private: Ed25519PrivateKey) -> SignatureInfo:
        """Sign ``v`` (name, number, artifact digest) with ``private`` and store it; the artifact is
        verified first, so a corrupt one is never signed."""
        self.artifact_path(v)
        return self.signatures.add(v.name, v.version, sign(private, v.name, v.version, v.sha256))

    def signature_problem(self, v: VersionInfo, trusted: dict[str, PublicKey]) -> str | None:
        """Why ``v`` may not run under requireSignedModels, or None when a trusted key's signature of it
        verifies."""
        found = [s.signed for s in self.signatures.of_version(v.name, v.version)]
        return policy_problem(v.name, v.version, v.sha256, found, trusted)

    # -- helpers -----------------------------------------------------------------------------------------

    def _put(self, artifact: Artifact) -> tuple[str, int]:
        if isinstance(artifact, bytes | bytearray | memoryview):
            return self._store.put_bytes(bytes(artifact))
        if isinstance(artifact, str | os.PathLike):
            return self._store.put_file(Path(artifact))
        raise errors.InvalidInput(f"artifact must be bytes or a file path, not {type(artifact).__name__}")

    def _insert(self) -> Any:
        return postgresql.insert if self._db.is_postgres else sqlite.insert

    def _lock_or_create_model(self, s: Session, name: str, description: str | None, by: str | None) -> Model:
        # ON CONFLICT DO NOTHING settles the race of two first registrations; FOR UPDATE then
        # serializes version allocation per model on PostgreSQL (SQLite's BEGIN IMMEDIATE already did).
        insert = self._insert()
        s.execute(
            insert(Model)
            .values(name=name, description=description, last_version=0, created_at=utcnow(), created_by=by)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        return self._model(s, name, lock=True)

    def _upsert_alias(self, s: Session, model_id: int, alias: str, version: int) -> None:
        insert = self._insert()
        stmt = insert(Alias).values(model_id=model_id, alias=alias, version=version)
        s.execute(stmt.on_conflict_do_update(index_elements=["model_id", "alias"], set_={"version": version}))

    def _delete_blob_if_unused(self, s: Session, sha256: str) -> None:
        # Inside the transaction, under the artifact lock, so a concurrent register of the same bytes either
        # sees the blob gone (and writes it again) or has its row counted here as a user.
        self._lock_artifact(s, sha256)
        users = s.scalar(select(func.count()).select_from(ModelVersion).where(ModelVersion.sha256 == sha256))
        if not users:
            self._store.delete(sha256)

    def _lock_artifact(self, s: Session, sha256: str) -> None:
        if self._db.is_postgres:  # SQLite writers are already serialized
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(sha256[:15], 16)})

    @staticmethod
    def _model(s: Session, name: str, *, lock: bool = False) -> Model:
        stmt = select(Model).where(Model.name == name)
        if lock:
            stmt = stmt.with_for_update()
        model = s.scalars(stmt).one_or_none()
        if model is None:
            raise errors.NotFound(f"model {name!r} not found")
        return model

    @staticmethod
    def _find_version(s: Session, model_id: int, version: int) -> ModelVersion | None:
        stmt = select(ModelVersion).where(ModelVersion.model_id == model_id, ModelVersion.version == version)
        return s.scalars(stmt).one_or_none()

    def _version(self, s: Session, model: Model, version: int) -> ModelVersion:
        row = self._find_version(s, model.id, version)
        if row is None:
            raise errors.NotFound(f"version {model.name}:{version} not found")
        return row

    @staticmethod
    def _alias_version(s: Session, model_id: int, alias: str) -> int | None:
        return s.scalar(select(Alias.version).where(Alias.model_id == model_id, Alias.alias == alias))

    @staticmethod
    def _aliases_of(s: Session, model_id: int, version: int) -> list[str]:
        stmt = select(Alias.alias).where(Alias.model_id == model_id, Alias.version == version)
        return sorted(s.scalars(stmt))


@contextmanager
def _naming(v: VersionInfo) -> Iterator[None]:
    """Say which version an artifact error is about: a digest alone names nothing a user registered."""
    try:
        yield
    except (errors.IntegrityError, errors.NotFound) as exc:
        raise type(exc)(f"model {v.ref}: {exc.message}", **exc.details) from None


def _deployments_running(s: Session, ref: str) -> list[str]:
    """Deployments whose current revision runs ``ref`` (``name:version``)."""
    stmt = (
        select(DeploymentRow.name)
        .join(
            DeploymentRevision,
            (DeploymentRevision.deployment_id == DeploymentRow.id)
            & (DeploymentRevision.revision == DeploymentRow.current_revision),
        )
        .where(DeploymentRevision.model == ref)
        .order_by(DeploymentRow.name)
    )
    return list(s.scalars(stmt))


def _version_info(name: str, row: ModelVersion, aliases: list[str]) -> VersionInfo:
    return VersionInfo(
        name=name,
        version=row.version,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        framework=row.framework,
        signature=dict(row.signature),
        description=row.description,
        tags=dict(row.tags or {}),
        aliases=sorted(aliases),
        parent_version=row.parent_version,
        created_at=row.created_at,
        created_by=row.created_by,
        metadata=dict(row.meta or {}),
    )


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if not isinstance(tags, dict):
        raise errors.InvalidInput(f"tags must be a mapping of strings to strings, not {type(tags).__name__}")
    for k, v in tags.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise errors.InvalidInput(
                f"invalid tag {k!r}={v!r}: tag keys and values are strings (keys non-empty)"
            )
    return dict(tags)


def _check_json(what: str, value: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.InvalidInput(f"{what} must be a JSON object (dict), not {type(value).__name__}")
    try:
        return dict(json.loads(json.dumps(value)))
    except (TypeError, ValueError) as e:
        raise errors.InvalidInput(f"{what} is not JSON-serializable: {e}") from None
