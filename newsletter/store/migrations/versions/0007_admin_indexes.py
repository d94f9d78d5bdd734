"""admin at scale: indexes for the dashboard, series page, subscriber list and calendar

Each index serves one admin query that otherwise read a whole table (issue 15: 100k readers,
1M ledger rows); benchmarks/admin_pages.py prints the plans.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, table, columns): kept in step with the Index() entries in store/models.py
INDEXES = (
    # dashboard: sent in the last 7 days (a range, not every sent row)
    ("ix_deliveries_status_sent", "deliveries", ["status", "sent_at"]),
    # series page: sent per part of the series shown (index-only), and the series FK
    ("ix_deliveries_series_part_status", "deliveries", ["series_id", "part_number", "status"]),
    # dashboard: bounces in the last 7 days
    ("ix_provider_events_type_occurred", "provider_events", ["event_type", "occurred_at"]),
    # dashboard: active readers on a pause
    ("ix_subscribers_status_paused", "subscribers", ["status", "paused_until"]),
    # subscriber list: newest first, a page at a time
    ("ix_subscribers_created", "subscribers", ["created_at", "id"]),
    # series page: the start date chosen when a series was queued
    ("ix_enrollments_series_not_before", "enrollments", ["series_id", "not_before"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
