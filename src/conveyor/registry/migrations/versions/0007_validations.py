"""Validations: each run of ``conveyor validate`` on a version (its verdict, every gate's result as JSON, the
baseline it was compared with, the HTML report's path), newest last per version.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "validations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "model_version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("baseline", sa.String(300)),
        sa.Column("gates", sa.JSON, nullable=False),
        sa.Column("report", sa.Text),
        sa.Column("created_by", sa.String(256)),
    )
    op.create_index("ix_validations_model_version_id", "validations", ["model_version_id"])


def downgrade() -> None:
    op.drop_index("ix_validations_model_version_id", table_name="validations")
    op.drop_table("validations")
