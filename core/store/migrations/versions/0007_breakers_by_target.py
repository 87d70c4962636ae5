"""Breakers keyed by target (what an agent calls) instead of by agent name.

A breaker keyed by a bare name was shared by every plan that used that name
for anything. The old rows say nothing about targets, so they are dropped:
breaker state is short-lived, and the next failures rebuild it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("breakers")
    op.create_table(
        "breakers",
        sa.Column("target", sa.String(512), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("opened_at", sa.Float),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("breakers")
    op.create_table(
        "breakers",
        sa.Column("agent", sa.String(128), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("opened_at", sa.Float),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
