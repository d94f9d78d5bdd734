"""suppressions.keyed: erased addresses kept as HMAC-SHA256 under the secret key

Rows stored before are plain SHA-256 (keyed = false). A migration can't re-key them (the
secret key lives in the environment or var/, not in the database): `newsletter init` does,
right after upgrading, and every lookup checks both forms until then (services/people.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("keyed", sa.Boolean(), nullable=False, server_default=sa.text("false"))
        )


def downgrade() -> None:
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_column("keyed")
