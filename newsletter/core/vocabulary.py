"""The product's words: statuses, states, cadences and weekdays, each written once."""

from __future__ import annotations

# Subscriber statuses. Only ACTIVE subscribers receive articles; the last four are suppressed.
PENDING, ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED, ERASED = (
    "pending",
    "active",
    "unsubscribed",
    "bounced",
    "complained",
    "erased",
)
SUBSCRIBER_STATUSES = (PENDING, ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED, ERASED)
SUPPRESSED_STATUSES = (UNSUBSCRIBED, BOUNCED, COMPLAINED, ERASED)

# Cadence preferences.
WEEKLY, FORTNIGHTLY = "weekly", "fortnightly"
CADENCES = {WEEKLY: 1, FORTNIGHTLY: 2}  # weeks between sends

# Enrollment states: QUEUED waits its turn behind earlier series; ACTIVE has a next_due_at;
# FINISHED has had every part; CANCELLED was dropped by the subscriber's preferences.
QUEUED, ENROLLED_ACTIVE, FINISHED, CANCELLED = "queued", "active", "finished", "cancelled"

# Series states: DRAFT until queued, LIVE once queued, PAUSED for everyone by the therapist.
DRAFT, LIVE, PAUSED = "draft", "live", "paused"

# Series kinds: a series of parts, or a broadcast (a one-off letter: one part, chosen readers).
SERIES_KIND, BROADCAST_KIND = "series", "broadcast"

# Delivery (ledger) statuses. CLAIMED: row written, provider not yet called or outcome unknown.
CLAIMED, SENT, RETRY, FAILED, SKIPPED = "claimed", "sent", "retry", "failed", "skipped"

# Weekdays as series files and the API name them, Monday first (datetime.weekday() order).
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Why sending halted: the provider refused our credentials (lifted by another key), the
# practice's own settings can't make a message, or its email templates can't be rendered
# (lifted once those settings, or the template files, change).
HALT_CREDENTIALS, HALT_PRACTICE, HALT_TEMPLATE = "credentials", "practice", "template"
