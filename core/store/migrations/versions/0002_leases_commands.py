"""Run leases (one driving process per run) and the commands inbox.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("lock_owner", sa.String(64)))
        batch.add_column(sa.Column("lock_host", sa.String(255)))
        batch.add_column(sa.Column("lock_pid", sa.Integer))
        batch.add_column(sa.Column("locked_until", sa.Float))
    op.create_table(
        "commands",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload_json", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("answered_at", sa.Float),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_commands_run_id_state", "commands", ["run_id", "state"])


def downgrade() -> None:
    op.drop_table("commands")
    with op.batch_alter_table("runs") as batch:
        for name in ("locked_until", "lock_pid", "lock_host", "lock_owner"):
            batch.drop_column(name)
