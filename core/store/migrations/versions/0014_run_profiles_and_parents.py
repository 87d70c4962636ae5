"""Run profiles and child runs: the harness profile a run was created with and what it resolved to (JSON;
NULL: none), and for a sub-agent's child run, the run and step it runs for (NULL: a top-level run).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("profile_json", sa.Text()))
        batch.add_column(sa.Column("parent_run_id", sa.String(32)))
        batch.add_column(sa.Column("parent_step", sa.String(128)))
    op.create_index("ix_runs_parent", "runs", ["parent_run_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_parent", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("parent_step")
        batch.drop_column("parent_run_id")
        batch.drop_column("profile_json")
