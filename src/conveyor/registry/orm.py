"""SQLAlchemy ORM tables of the registry: models, versions, aliases, deployments, tokens, the audit log,
signatures, alerts, rollouts, validations and leases (DDL: migrations/)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from conveyor.registry.records import ROLLOUT_ACTIVE_PHASES


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", name="uq_models_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    # Highest version number ever allocated: numbers are never reused, even after deleting the latest.
    last_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(256))


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    framework: Mapped[str] = mapped_column(String(64), nullable=False)
    signature: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    parent_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(256))
    # "metadata" is reserved on declarative classes, hence the attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)


class Alias(Base):
    __tablename__ = "aliases"
    __table_args__ = (
        UniqueConstraint("model_id", "alias", name="uq_aliases_model_alias"),
        # An alias points at an existing version; deleting an aliased version fails in the database too.
        ForeignKeyConstraint(
            ["model_id", "version"],
            ["model_versions.model_id", "model_versions.version"],
            name="fk_aliases_version",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), nullable=False)
    alias: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)


class DeploymentRow(Base):
    """A named deployment; ``current_revision`` is also the revision counter (revisions are never deleted)."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("name", name="uq_deployments_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    current_revision: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(256))


class DeploymentRevision(Base):
    __tablename__ = "deployment_revisions"
    __table_args__ = (
        UniqueConstraint("deployment_id", "revision", name="uq_deployment_revisions_deployment_revision"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False
    )
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    # The resolved ``name:version`` the revision runs (an alias in the spec is pinned when it is created).
    model: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(256))
    change_cause: Mapped[str] = mapped_column(Text, nullable=False)


class DeploymentEvent(Base):
    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False, index=True
    )
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)


class ApiToken(Base):
    """A bearer token: only its salted hash is kept; ``token_id`` is the public part that finds the row."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        UniqueConstraint("token_id", name="uq_api_tokens_token_id"),
        # A name is taken while its token is live; a revoked token's name may be reused.
        Index(
            "uq_api_tokens_live_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    models: Mapped[str | None] = mapped_column(String(256))  # glob of the model names a predictor may call
    rate_limit: Mapped[float | None] = mapped_column(Float)  # requests per second; None: unlimited
    salt: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(256))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(256))


class AuditRecord(Base):
    """One change, chained to the one before by ``prev_hash`` (security/audit_chain.py)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    actor: Mapped[str] = mapped_column(String(256), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    object: Mapped[str] = mapped_column(String(300), nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class ModelSignature(Base):
    """An Ed25519 signature of a version's artifact digest by one key (security/signing.py)."""

    __tablename__ = "model_signatures"
    __table_args__ = (UniqueConstraint("model_version_id", "key_id", name="uq_model_signatures_version_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    key_id: Mapped[str] = mapped_column(String(64), nullable=False)  # fingerprint of the public key
    signature: Mapped[str] = mapped_column(Text, nullable=False)  # base64
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    signed_by: Mapped[str | None] = mapped_column(String(256))


class AlertRuleRow(Base):
    """A ``kind: AlertRule`` resource as applied (its canonical spec); alerts of deployments live in their
    revisions' specs."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("name", name="uq_alert_rules_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(256))


class AlertRow(Base):
    """One alert (rule, deployment, version) as the control plane last evaluated it: pending, firing or
    resolved (observe/alert_state.py)."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("rule", "deployment", "version", name="uq_alerts_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(128), nullable=False)
    deployment: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    value: Mapped[float | None] = mapped_column(Float)
    active_since: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)


_ACTIVE_WHERE = f"phase IN ({', '.join(repr(p) for p in ROLLOUT_ACTIVE_PHASES)})"


class RolloutRow(Base):
    """One progressive rollout of a deployment from its stable revision to a candidate (control/rollouts.py);
    at most one per deployment is active (a partial unique index, so two writers cannot both start one)."""

    __tablename__ = "rollouts"
    __table_args__ = (
        UniqueConstraint("deployment_id", "number", name="uq_rollouts_deployment_number"),
        Index(
            "uq_rollouts_active",
            "deployment_id",
            unique=True,
            sqlite_where=text(_ACTIVE_WHERE),
            postgresql_where=text(_ACTIVE_WHERE),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False
    )
    number: Mapped[int] = mapped_column(Integer, nullable=False)  # 1, 2, ... per deployment
    strategy: Mapped[str] = mapped_column(String(16), nullable=False)
    phase: Mapped[str] = mapped_column(String(16), nullable=False)
    stable_revision: Mapped[int] = mapped_column(Integer, nullable=False)
    candidate_revision: Mapped[int] = mapped_column(Integer, nullable=False)
    stable_model: Mapped[str | None] = mapped_column(String(300))
    candidate_model: Mapped[str | None] = mapped_column(String(300))
    step: Mapped[int] = mapped_column(Integer, nullable=False)  # index into the plan's steps
    weight: Mapped[float] = mapped_column(Float, nullable=False)  # percent of traffic on the candidate
    failed_checks: Mapped[int] = mapped_column(Integer, nullable=False)
    passed_checks: Mapped[int] = mapped_column(Integer, nullable=False)  # consecutive, in this step
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)  # the rollout block as applied
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    step_started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_by: Mapped[str | None] = mapped_column(String(256))
    reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class RolloutEventRow(Base):
    """One event of a rollout: a step, a verdict, a pause, its end; ``data`` holds the details (checks)."""

    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class ValidationRow(Base):
    """One ``conveyor validate`` run on a version: the verdict, each gate's result, the baseline compared with
    and where the HTML report was written (validate/). The newest is the version's verdict."""

    __tablename__ = "validations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    passed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    baseline: Mapped[str | None] = mapped_column(String(300))  # NAME:VERSION, or None
    gates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    report: Mapped[str | None] = mapped_column(Text)  # the HTML report's path
    created_by: Mapped[str | None] = mapped_column(String(256))


class LeaseRow(Base):
    """A named lease (``control-plane``: the leadership) and its holder, until ``expires_at`` by the
    database's clock in epoch seconds (registry/leases.py). ``term`` counts changes of holder. Not backed up:
    it is about the processes running now, not the registry's content."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(300), nullable=False)
    address: Mapped[str | None] = mapped_column(String(300))
    term: Mapped[int] = mapped_column(BigInteger, nullable=False)
    acquired_at: Mapped[float] = mapped_column(Float, nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)


class EdgeNodeRow(Base):
    """An edge node following a deployment (``conveyor edge run``, docs/edge.md): its name and labels as it
    registered, and what its latest heartbeat said (the version it serves, health, request counts, why it
    refused a version), with when the control plane heard from it."""

    __tablename__ = "edge_nodes"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(63), nullable=False, index=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    address: Mapped[str | None] = mapped_column(String(300))  # where it serves V2, as it says
    agent_version: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(32))  # the version it serves; None: none yet
    health: Mapped[str] = mapped_column(String(32), nullable=False, default="starting")
    requests: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    problem: Mapped[str | None] = mapped_column(Text)  # why it refused or could not get a version
    cached: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
