"""series.starts_on: a series' start date belongs to the series, not to the enrollments of the
readers who existed when it was queued (later signups, imports and resubscribes got none)

Filled from the enrollments: the earliest not_before among each series' (what the admin's
series page showed as its start until now).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.add_column(sa.Column("starts_on", sa.Date(), nullable=True))
    op.execute(
        "UPDATE series SET starts_on = (SELECT min(e.not_before) FROM enrollments e"
        " WHERE e.series_id = series.id AND e.not_before IS NOT NULL)"
    )


def downgrade() -> None:
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_column("starts_on")
