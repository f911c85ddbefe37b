"""Rollouts: each progressive rollout of a deployment (stable and candidate revisions, phase, step, weight,
check counts, the rollout block as applied) and its events. At most one active rollout per deployment.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ACTIVE_WHERE = "phase IN ('progressing', 'paused', 'waiting')"


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "deployment_id", sa.Integer, sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("stable_revision", sa.Integer, nullable=False),
        sa.Column("candidate_revision", sa.Integer, nullable=False),
        sa.Column("stable_model", sa.String(300)),
        sa.Column("candidate_model", sa.String(300)),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("failed_checks", sa.Integer, nullable=False),
        sa.Column("passed_checks", sa.Integer, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("started_by", sa.String(256)),
        sa.Column("reason", sa.Text),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.UniqueConstraint("deployment_id", "number", name="uq_rollouts_deployment_number"),
    )
    op.create_index(
        "uq_rollouts_active",
        "rollouts",
        ["deployment_id"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE_WHERE),
        postgresql_where=sa.text(_ACTIVE_WHERE),
    )
    op.create_table(
        "rollout_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_rollout_events_rollout_id", "rollout_events", ["rollout_id"])


def downgrade() -> None:
    op.drop_index("ix_rollout_events_rollout_id", table_name="rollout_events")
    op.drop_table("rollout_events")
    op.drop_index("uq_rollouts_active", table_name="rollouts")
    op.drop_table("rollouts")
