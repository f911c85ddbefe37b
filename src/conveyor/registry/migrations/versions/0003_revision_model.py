"""The resolved model (``name:version``) each deployment revision runs.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table beyond ADD COLUMN, and keeps its other tables untouched.
    with op.batch_alter_table("deployment_revisions") as batch:
        batch.add_column(sa.Column("model", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployment_revisions") as batch:
        batch.drop_column("model")
