"""deliveries on PostgreSQL: the status indexes hold only the rows their queries look for

Every ledger row is written three times on the happy path (claimed, handed, sent), and on
PostgreSQL each of those writes (none is a HOT update: each changes an indexed column) adds an
entry to every index whose predicate the new tuple matches.
- ix_deliveries_status_sent (status, sent_at) -> ix_deliveries_sent_at (sent_at) WHERE
  status = 'sent': its queries (sent since, the first send in a span) only ask for sent rows,
  so the claimed and handed tuples no longer go into it. Keyed on sent_at alone: the planner
  drops the `status = 'sent'` the WHERE implies, and with status leading it read the whole
  index for a week's range.
- ix_deliveries_status_updated (status, updated_at) WHERE status <> 'sent': reconcile and the
  retry and failure counts and lists only ask for rows not sent, so the sent tuple (the
  ledger's bulk) no longer goes into it.
15 index entries per recipient become 12. SQLite keeps both indexes full: its planner uses a
partial index only when the query repeats the index's WHERE term, and without statistics it
chose the status index over a partial sent_at one for "sent since".

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

# (old full index, its columns) -> (new partial index, its columns, predicate), PostgreSQL only:
# kept in step with Delivery's indexes in store/models.py
PARTIAL = (
    (
        ("ix_deliveries_status_sent", ["status", "sent_at"]),
        ("ix_deliveries_sent_at", ["sent_at"], "status = 'sent'"),
    ),
    (
        ("ix_deliveries_status_updated", ["status", "updated_at"]),
        ("ix_deliveries_status_updated", ["status", "updated_at"], "status <> 'sent'"),
    ),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for (old, _), (new, columns, where) in PARTIAL:
        op.drop_index(old, table_name="deliveries")
        op.create_index(new, "deliveries", columns, postgresql_where=sa.text(where))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for (old, columns), (new, _, _) in PARTIAL:
        op.drop_index(new, table_name="deliveries")
        op.create_index(old, "deliveries", columns)
