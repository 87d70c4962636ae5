"""Tool calls: one durable record per call an agent asks for (``model.tools``).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tool_calls",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("step_key", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("turn", sa.Integer, nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("server", sa.String(64)),
        sa.Column("model_call_id", sa.String(200)),
        sa.Column("text", sa.Text),
        sa.Column("arguments_json", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("result_json", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("decided_by", sa.String(128)),
        sa.Column("rule", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_tool_calls_step", "tool_calls", ["run_id", "step_key", "attempt"])


def downgrade() -> None:
    op.drop_table("tool_calls")
