"""Plans move out of the runs table, into run_plans.

A run's row is updated at every step (status, token totals); SQLite rewrites a
whole row on update, so a large plan stored in it made every update cost in
proportion to the plan's size (a 10,000-step plan is over a megabyte).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_plans",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("plan_json", sa.Text, nullable=False),
    )
    op.execute("INSERT INTO run_plans (run_id, plan_json) SELECT id, plan_json FROM runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("plan_json")


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("plan_json", sa.Text, nullable=False, server_default="{}"))
    op.execute("UPDATE runs SET plan_json = (SELECT plan_json FROM run_plans WHERE run_plans.run_id = runs.id)")
    op.drop_table("run_plans")
