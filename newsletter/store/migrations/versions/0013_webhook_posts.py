"""webhook_posts: each post the SendGrid webhook endpoint received and its answer, the evidence
the absence rule (engine.absence) needs: a failed post means the provider will post again.

Revision ID: 0013
Revises: 0008
Create Date: 2026-12-07 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_posts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("newest_handed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_posts_received_at", "webhook_posts", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_posts_received_at", table_name="webhook_posts")
    op.drop_table("webhook_posts")
