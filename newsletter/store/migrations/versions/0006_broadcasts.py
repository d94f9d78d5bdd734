"""broadcasts: series.kind and series.in_archive, and the broadcasts table

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="series")
        )
        batch_op.add_column(
            sa.Column("in_archive", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "series_id",
            sa.Integer(),
            sa.ForeignKey("series.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("timing", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=True),
        sa.Column("on_date", sa.Date(), nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("broadcasts")
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_column("in_archive")
        batch_op.drop_column("kind")
