"""Spans of three kinds: an attempt's, each chat turn's within it, each tool call's.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("spans") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="attempt"))
        batch.add_column(sa.Column("name", sa.String(200)))
        batch.add_column(sa.Column("turn", sa.Integer))
        batch.add_column(sa.Column("attributes_json", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("spans") as batch:
        for name in ("attributes_json", "turn", "name", "kind"):
            batch.drop_column(name)
