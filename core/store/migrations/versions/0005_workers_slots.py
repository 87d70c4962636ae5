"""Workers (a pool of processes sharing one database) and agent slots held across processes.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("stopped_at", sa.Float),
        sa.Column("runs_claimed", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "agent_slots",
        sa.Column("agent", sa.String(128), primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True),
        sa.Column("holder", sa.String(128)),
        sa.Column("run_id", sa.String(32)),
        sa.Column("expires_at", sa.Float),
    )
    op.create_index("ix_runs_claimable", "runs", ["status", "locked_until"])


def downgrade() -> None:
    op.drop_index("ix_runs_claimable", "runs")
    op.drop_table("agent_slots")
    op.drop_table("workers")
