"""turn locks and turn events: answers that outlive the request

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "turn_locks",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("thread_id", sa.String(64), nullable=False),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("stop_requested", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["threads.id"],
            name=op.f("fk_turn_locks_thread_id_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "thread_id", name=op.f("pk_turn_locks")),
    )
    op.create_table(
        "turn_events",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.String(64), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["threads.id"],
            name=op.f("fk_turn_events_thread_id_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "turn_id", "seq", name=op.f("pk_turn_events")),
    )
    op.create_index("ix_turn_events_user_thread", "turn_events", ["user_id", "thread_id"])


def downgrade() -> None:
    op.drop_index("ix_turn_events_user_thread", table_name="turn_events")
    op.drop_table("turn_events")
    op.drop_table("turn_locks")
