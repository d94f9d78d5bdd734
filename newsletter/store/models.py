"""Database tables: subscribers, series and parts, enrollments, the delivery ledger, events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from newsletter.core.timing import utcnow
from newsletter.core.vocabulary import (  # noqa: F401  (re-exported: the models' words)
    ACTIVE,
    BOUNCED,
    BROADCAST_KIND,
    CADENCES,
    CANCELLED,
    CLAIMED,
    COMPLAINED,
    DRAFT,
    ENROLLED_ACTIVE,
    ERASED,
    FAILED,
    FINISHED,
    FORTNIGHTLY,
    LIVE,
    PAUSED,
    PENDING,
    QUEUED,
    RETRY,
    SENT,
    SERIES_KIND,
    SKIPPED,
    SUBSCRIBER_STATUSES,
    SUPPRESSED_STATUSES,
    UNSUBSCRIBED,
    WEEKLY,
)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores naive UTC, always returns aware UTC datetimes (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Subscriber(Base):
    __tablename__ = "subscribers"
    __table_args__ = (
        Index("ix_subscribers_status_paused", "status", "paused_until"),
        Index("ix_subscribers_created", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Random key carried (signed) in links instead of the id or the address.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(
        String(320), unique=True
    )  # lower-cased: unique ignoring case
    name: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    cadence: Mapped[str] = mapped_column(String(16), default=WEEKLY)
    paused_until: Mapped[dt.date | None] = mapped_column(Date)
    takes_new_series: Mapped[bool] = mapped_column(Boolean, default=True)
    # Series slugs chosen on the signup form, kept until confirmation enrolls them (None: all).
    requested_series: Mapped[list[str] | None] = mapped_column(JSON)
    consent_at: Mapped[dt.datetime | None]
    consent_method: Mapped[str | None] = mapped_column(String(32))  # form / cli / import / api
    consent_ip: Mapped[str | None] = mapped_column(String(64))
    consent_form: Mapped[str | None] = mapped_column(String(64))
    consent_wording: Mapped[str | None] = mapped_column(String(32))  # wording version shown
    confirmed_at: Mapped[dt.datetime | None]
    unsubscribed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Suppression(Base):
    """Addresses that must never be mailed or re-imported (erased subscribers), kept hashed:
    HMAC-SHA256 under the secret key (`keyed`), or a plain SHA-256 stored before revision 0004
    until `newsletter init` (or a lookup that hits it) re-keys it."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    keyed: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("false"))
    reason: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    send_day: Mapped[int] = mapped_column(Integer)  # 0 = Monday … 6 = Sunday
    send_time: Mapped[str] = mapped_column(String(5))  # "HH:MM", subscriber-local
    cadence: Mapped[str] = mapped_column(String(16), default=WEEKLY)
    order: Mapped[int] = mapped_column(Integer, default=100)
    state: Mapped[str] = mapped_column(String(16), default=DRAFT)
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    queued_at: Mapped[dt.datetime | None]
    # `series queue --start`: no reader gets part 1 before this (their local) date, whenever
    # they join; copied into each new enrollment's not_before (engine.schedule.opening)
    starts_on: Mapped[dt.date | None] = mapped_column(Date)
    # "series", or "broadcast": a one-part letter to a chosen audience (engine.broadcasts)
    kind: Mapped[str] = mapped_column(String(16), default=SERIES_KIND, server_default=SERIES_KIND)
    # listed in the public archive and feeds once sent (a broadcast may be private)
    in_archive: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Part(Base):
    __tablename__ = "parts"
    __table_args__ = (UniqueConstraint("series_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 1-based
    filename: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    body_md: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    first_sent_at: Mapped[
        dt.datetime | None
    ]  # set once any subscriber got it: then it is published
    # set when the admin corrected the text after it went out (services.corrections)
    corrected_at: Mapped[dt.datetime | None]


class Enrollment(Base):
    """One subscriber's place in one series, and where that series sits in their queue."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "series_id"),
        Index("ix_enrollments_state_due", "state", "next_due_at"),
        Index("ix_enrollments_subscriber_position", "subscriber_id", "position"),
        Index("ix_enrollments_series_not_before", "series_id", "not_before"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # order in the subscriber's queue
    next_part: Mapped[int] = mapped_column(Integer, default=1)
    next_due_at: Mapped[dt.datetime | None]
    not_before: Mapped[dt.date | None] = mapped_column(Date)  # from `series queue --start`
    state: Mapped[str] = mapped_column(String(16), default=QUEUED)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WaitingQueue(Base):
    """A reader's waiting queue as the calendar groups it: "series:part:start;…", every queued
    place in queue order; a row only while something waits. Kept by the database's triggers on
    enrollments (migration 0020), never written by the app."""

    __tablename__ = "waiting_queues"

    subscriber_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    places: Mapped[str] = mapped_column(Text)


class Delivery(Base):
    """The ledger: one row per (subscriber, series, part), written before the provider is called."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "series_id", "part_number", name="uq_delivery_once"),
        # On PostgreSQL only the rows their queries ask for (migration 0019): a sent tuple, the
        # ledger's bulk, never goes into status_updated, claimed and handed ones never into
        # sent_at (keyed on sent_at alone: PostgreSQL drops the status = 'sent' its WHERE
        # implies, and a leading status column would leave no range to start from). SQLite
        # keeps the full (status, sent_at) and (status, updated_at): its planner, without
        # statistics, passed over a partial sent_at index.
        Index(
            "ix_deliveries_status_updated",
            "status",
            "updated_at",
            postgresql_where=text(f"status <> '{SENT}'"),
        ),
        Index(
            "ix_deliveries_sent_at", "sent_at", postgresql_where=text(f"status = '{SENT}'")
        ).ddl_if(dialect="postgresql"),
        Index("ix_deliveries_status_sent", "status", "sent_at").ddl_if(dialect="sqlite"),
        Index("ix_deliveries_series_part_status", "series_id", "part_number", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"))
    part_number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=CLAIMED)
    scheduled_for: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]  # confirmed by a provider event
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # hand-overs whose process died before recording an outcome (+1 at the hand-over, -1 when
    # the outcome is recorded); MAX_CRASHES of them mark the row failed (dispatch.reconcile)
    crashes: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    retry_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ExtraSend(Base):
    """The ledger's extra sends: one part sent again to one reader by hand ("again") or a
    corrected part sent to those who had it ("correction"). Never a reader's progress (the
    enrollments never read it); `request_key` (from the form) makes a double submit one row.
    Written only by store/ledger/extras.py."""

    __tablename__ = "extra_sends"
    __table_args__ = (Index("ix_extra_sends_subscriber", "subscriber_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_key: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # again / correction
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"))
    part_number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=CLAIMED)  # claimed/handed/sent/failed
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReaderAction(Base):
    """What the admin did to one reader from her page (edit, move, skip, send again): the
    activity list on the person's page. Erasing the person deletes theirs."""

    __tablename__ = "reader_actions"
    __table_args__ = (Index("ix_reader_actions_subscriber", "subscriber_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


class Broadcast(Base):
    """A one-off letter: its series (kind "broadcast", one part), audience and timing."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), unique=True)
    # {"kind": "all" | "series" | "joined_before", "series": [slugs], "before": "YYYY-MM-DD"}
    audience: Mapped[dict[str, Any]] = mapped_column(JSON)
    timing: Mapped[str] = mapped_column(String(16))  # now / slot (a date) / moment
    at: Mapped[dt.datetime | None]  # moment: the instant; slot: midnight UTC of the date
    on_date: Mapped[dt.date | None] = mapped_column(Date)  # slot: the readers' local date
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ProviderEvent(Base):
    __tablename__ = "provider_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        Index("ix_provider_events_type_occurred", "event_type", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    occurred_at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    detail: Mapped[str | None] = mapped_column(Text)  # reason / response text


class WebhookPost(Base):
    """One post our webhook endpoint received and its answer (NULL: never answered)."""

    __tablename__ = "webhook_posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(index=True)
    status: Mapped[int | None] = mapped_column(Integer)
    # the newest hand-over among the ledger rows its events named (the rows were handed or
    # sent when the event came): how far the provider's reports had got
    newest_handed_at: Mapped[dt.datetime | None]
    # sha256 of the body (NULL: not read): the provider retries a failed post with the same
    # batch, so a later 2xx answer to the same body clears the failure (engine.absence)
    body_hash: Mapped[str | None] = mapped_column(String(64))


class AppState(Base):
    """Small key-value facts the whole app shares: admin password hash, 'sending stopped', …"""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]


class Account(Base):
    """A person who signs in to the admin: the owner or an assistant (services/accounts.py).

    `password_hash` is Argon2 (None until an invite is accepted); `totp_secret` is encrypted with
    a key derived from the secret key; `recovery_codes` holds SHA-256 digests, one a line;
    `generation` grows on "sign out everywhere" and on a password change (cookies carry it)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text)
    totp_secret: Mapped[str | None] = mapped_column(Text)
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    recovery_codes: Mapped[str] = mapped_column(Text, default="")
    generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PracticeSetting(Base):
    """A practice detail the admin saved (name, sender, signup wording, …): one row a field.

    Which keys exist and how they are checked is in newsletter/store/practice.py.
    """

    __tablename__ = "practice_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookEndpoint(Base):
    """An address of her other tools that hears about readers (outgoing webhooks, issue 25).

    Which events it hears and how deliveries go are in newsletter/store/webhooks_out.py."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    include_email: Mapped[bool] = mapped_column(Boolean, default=False)
    secret: Mapped[str] = mapped_column(Text)  # sealed (core.sealing), shown once in clear
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint (the outbox): its body, fixed when the event happened, and
    how its delivery goes (pending / delivered / failed, attempts, next try)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_try_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(32))
    reader_id: Mapped[str | None] = mapped_column(String(32))  # the public id, when it happened
    # whose event (no foreign key: erasure deletes the reader and clears this, see forget)
    subscriber_id: Mapped[int | None] = mapped_column(Integer, index=True)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[dt.datetime]
    queued_at: Mapped[dt.datetime | None]  # handed to a worker (the sweep's lease)
    last_result: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
