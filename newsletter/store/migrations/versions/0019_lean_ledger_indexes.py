"""deliveries: indexes that hold only the rows their queries look for (fewer writes per send)

Every ledger row is written three times on the happy path (claimed, handed, sent) and each
write that changes status or a time adds an entry to every index the new tuple matches.
- ix_deliveries_status_sent (status, sent_at) -> ix_deliveries_sent_at (sent_at) WHERE
  status = 'sent': its queries (sent since, first send in a span) only ask for sent rows, so
  the claimed and handed tuples no longer go into it (both databases).
- ix_deliveries_status_updated (status, updated_at) -> the same columns WHERE status <> 'sent'
  on PostgreSQL: reconcile, the retry and failure counts and lists only ask for rows that are
  not sent, so the sent tuple (the ledger's bulk: 98% of it) no longer goes into it. SQLite
  keeps the full index: its planner uses a partial index only when the query repeats the
  index's own WHERE term, and `status = 'claimed'` is not `status <> 'sent'`.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SENT_ONLY = sa.text("status = 'sent'")
NOT_SENT = sa.text("status <> 'sent'")


def upgrade() -> None:
    op.drop_index("ix_deliveries_status_sent", table_name="deliveries")
    op.create_index(
        "ix_deliveries_sent_at",
        "deliveries",
        ["sent_at"],
        postgresql_where=SENT_ONLY,
        sqlite_where=SENT_ONLY,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_deliveries_status_updated", table_name="deliveries")
        op.create_index(
            "ix_deliveries_status_updated",
            "deliveries",
            ["status", "updated_at"],
            postgresql_where=NOT_SENT,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_deliveries_status_updated", table_name="deliveries")
        op.create_index("ix_deliveries_status_updated", "deliveries", ["status", "updated_at"])
    op.drop_index("ix_deliveries_sent_at", table_name="deliveries")
    op.create_index("ix_deliveries_status_sent", "deliveries", ["status", "sent_at"])
