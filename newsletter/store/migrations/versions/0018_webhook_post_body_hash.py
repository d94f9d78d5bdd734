"""webhook_posts.body_hash: a failed post is cleared when the provider's retry of the same batch
(the same body) is answered 2xx (engine.absence).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 07:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_posts") as batch:
        batch.add_column(sa.Column("body_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_posts") as batch:
        batch.drop_column("body_hash")
