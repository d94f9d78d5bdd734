"""reader tools and corrections: parts.corrected_at, the extra_sends ledger table (a part sent
again by hand, a correction), and reader_actions (the activity list on a person's page)

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-07 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("parts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("corrected_at", sa.DateTime(), nullable=True))
    op.create_table(
        "extra_sends",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_key", sa.String(length=100), nullable=False, unique=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "subscriber_id",
            sa.Integer(),
            sa.ForeignKey("subscribers.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column(
            "series_id",
            sa.Integer(),
            sa.ForeignKey("series.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_extra_sends_subscriber", "extra_sends", ["subscriber_id", "created_at"])
    op.create_table(
        "reader_actions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "subscriber_id",
            sa.Integer(),
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_reader_actions_subscriber", "reader_actions", ["subscriber_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_reader_actions_subscriber", table_name="reader_actions")
    op.drop_table("reader_actions")
    op.drop_index("ix_extra_sends_subscriber", table_name="extra_sends")
    op.drop_table("extra_sends")
    with op.batch_alter_table("parts", schema=None) as batch_op:
        batch_op.drop_column("corrected_at")
