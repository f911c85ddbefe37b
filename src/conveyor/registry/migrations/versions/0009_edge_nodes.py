"""Edge nodes: the nodes following a deployment (``conveyor edge run``), their labels and latest heartbeat
(registry/edges.py, docs/edge.md).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edge_nodes",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("deployment", sa.String(63), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("address", sa.String(300)),
        sa.Column("agent_version", sa.String(64)),
        sa.Column("version", sa.String(32)),
        sa.Column("health", sa.String(32), nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("problem", sa.Text),
        sa.Column("cached", sa.JSON, nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_edge_nodes_deployment", "edge_nodes", ["deployment"])


def downgrade() -> None:
    op.drop_index("ix_edge_nodes_deployment", "edge_nodes")
    op.drop_table("edge_nodes")
