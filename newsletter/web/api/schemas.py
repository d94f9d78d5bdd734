"""The API's request and response models (what /openapi.json documents)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from newsletter.services.people import PersonView


class PartOut(BaseModel):
    number: int
    title: str
    summary: str
    first_sent_at: dt.datetime | None
    sent: int = Field(description="How many people have been sent this part")
    waiting: int = Field(
        description="Active subscribers whose next part in this series is this one"
    )


class SeriesOut(BaseModel):
    slug: str
    title: str
    description: str
    state: Literal["draft", "live", "paused"]
    send_day: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    send_time: str
    cadence: str
    queued_at: dt.datetime | None
    finished: int = Field(description="Active subscribers who have had every part")
    parts: list[PartOut]


class QueueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: dt.date | None = Field(None, description="Nobody gets the series before this date")


class QueueOut(BaseModel):
    slug: str
    count: int = Field(description="Subscribers the series will reach")
    first_date: dt.date | None


class SubscriberOut(BaseModel):
    id: int
    email: str
    name: str | None
    timezone: str
    status: Literal["pending", "active", "unsubscribed", "bounced", "complained", "erased"]
    cadence: Literal["weekly", "fortnightly"]
    paused_until: dt.date | None
    takes_new_series: bool
    consent_method: str | None
    consent_at: dt.datetime | None
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    created_at: dt.datetime

    @classmethod
    def of(cls, sub: PersonView) -> SubscriberOut:
        return cls(
            id=sub.id,
            email=sub.email,
            name=sub.name,
            timezone=sub.timezone,
            status=sub.status,
            cadence=sub.cadence,
            paused_until=sub.paused_until,
            takes_new_series=sub.takes_new_series,
            consent_method=sub.consent_method,
            consent_at=sub.consent_at,
            confirmed_at=sub.confirmed_at,
            unsubscribed_at=sub.unsubscribed_at,
            created_at=sub.created_at,
        )


class SubscriberPage(BaseModel):
    total: int
    items: list[SubscriberOut]


class SubscriberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str | None = Field(None, max_length=100)
    timezone: str | None = Field(None, max_length=64, description="IANA zone; default if empty")
    series: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=50, description="Series slugs; empty: every series"
    )
    confirmed: bool = Field(
        False, description="Consent was given elsewhere: active at once, no confirmation email"
    )


class SubscriberPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100)
    timezone: str | None = Field(None, max_length=64)
    cadence: Literal["weekly", "fortnightly"] | None = None
    paused_until: dt.date | None = None
    takes_new_series: bool | None = None


class RecordSubscriber(BaseModel):
    email: str
    name: str | None
    timezone: str
    status: str
    cadence: str
    paused_until: str | None
    takes_new_series: bool
    created_at: str | None
    confirmed_at: str | None
    unsubscribed_at: str | None


class RecordConsent(BaseModel):
    method: str | None
    at: str | None
    ip: str | None
    form: str | None
    wording: str | None


class RecordEnrollment(BaseModel):
    series: str
    title: str
    position: int
    state: str
    next_part: int
    next_due_at: str | None
    not_before: str | None


class RecordDelivery(BaseModel):
    id: int
    series: str
    part: int
    status: str
    scheduled_for: str | None
    sent_at: str | None
    delivered_at: str | None
    attempts: int
    last_error: str | None


class RecordEvent(BaseModel):
    provider: str
    type: str
    occurred_at: str | None
    delivery_id: int | None
    detail: str | None


class SubscriberRecord(BaseModel):
    """Everything held about one person (times as ISO-8601 text)."""

    subscriber: RecordSubscriber
    consent: RecordConsent
    enrollments: list[RecordEnrollment]
    deliveries: list[RecordDelivery]
    events: list[RecordEvent]


class ProblemOut(BaseModel):
    line: int
    reason: str


class ImportOut(BaseModel):
    dry_run: bool
    confirmed: bool
    rows: int
    new: int
    existing: int
    duplicates: int
    invalid: list[ProblemOut]
    confirmations_sent: int
    confirmations_failed: int
    source: str = ""  # the tool the file came from (services.import_sources), or ours
    columns: list[list[str]] = []  # [the file's column, what it becomes]
    tags: dict[str, int] = {}  # a tool's tags and how many rows carry each


class DeliveryOut(BaseModel):
    id: int
    subscriber_id: int | None
    series: str
    part: int
    status: Literal["claimed", "sent", "retry", "failed", "skipped"]
    scheduled_for: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    attempts: int
    last_error: str | None


class CohortOut(BaseModel):
    series: str
    series_title: str
    part: int
    part_title: str
    count: int
    first_at: dt.datetime


class DayOut(BaseModel):
    date: dt.date
    total: int
    cohorts: list[CohortOut]


class FailureOut(BaseModel):
    delivery_id: int
    subscriber_id: int | None
    series: str
    part: int
    status: str
    reason: str
    when: dt.datetime


class LastDaysOut(BaseModel):
    sent: int
    failed: int
    bounced: int
    retrying: int
    failures: list[FailureOut]


class StatsOut(BaseModel):
    subscribers: dict[str, int]
    week: list[DayOut]
    last_7_days: LastDaysOut
    sending_halted: str | None


Status = Literal["pending", "active", "unsubscribed", "bounced", "complained", "erased"]


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: str = Field("", max_length=200, description="Part of an address or name (any case)")
    status: Status | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)
