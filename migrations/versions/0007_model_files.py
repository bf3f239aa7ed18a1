"""model files: provider file ids of attachments, and the renditions sent inline

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_files",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("attachment_id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(255), nullable=False),
        sa.Column("file_id", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint(
            "user_id", "attachment_id", "provider", name=op.f("pk_provider_files")
        ),
    )
    op.create_table(
        "attachment_renditions",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("attachment_id", sa.String(64), nullable=False),
        sa.Column("mime_type", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "attachment_id", name=op.f("pk_attachment_renditions")),
    )


def downgrade() -> None:
    op.drop_table("attachment_renditions")
    op.drop_table("provider_files")
