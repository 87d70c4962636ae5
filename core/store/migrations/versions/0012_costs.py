"""Costs in US dollars: per step, per run, per span (NULL on rows from before: unknown); a run's cost budget.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("runs", "steps", "spans"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("cost_usd", sa.Float()))
            if table == "runs":
                batch.add_column(sa.Column("cost_budget_usd", sa.Float()))


def downgrade() -> None:
    for table in ("runs", "steps", "spans"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("cost_usd")
            if table == "runs":
                batch.drop_column("cost_budget_usd")
