"""Approval deadlines: when a waiting plan's, step's or tool call's gate times out (NULL: never).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("runs", "steps", "tool_calls"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("deadline", sa.Float()))


def downgrade() -> None:
    for table in ("runs", "steps", "tool_calls"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("deadline")
