"""One reader's queue as the schedule rule sees it, for a person's page and the preference page."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core import schedule_rule as rule
from newsletter.store.calendar.catalogue import catalogue
from newsletter.store.calendar.groups import NEAR, taken_days
from newsletter.store.models import (
    ACTIVE,
    BROADCAST_KIND,
    CLAIMED,
    ENROLLED_ACTIVE,
    LIVE,
    QUEUED,
    RETRY,
    SENT,
    Delivery,
    Enrollment,
    Series,
    Subscriber,
)


def person_queue(session: Session, subscriber: Subscriber, now: dt.datetime) -> rule.Queue:
    """One reader's queue as the schedule rule sees it: the active place, the live series
    waiting behind it in queue order, their broadcasts still to come and the days taken by
    broadcasts in flight or sent lately."""
    reader = rule.Reader(subscriber.timezone, subscriber.cadence, subscriber.paused_until)
    if subscriber.status != ACTIVE:
        return rule.Queue(reader)
    cat = catalogue(session)
    rows = session.execute(
        select(
            Enrollment.series_id,
            Enrollment.state,
            Enrollment.next_part,
            Enrollment.next_due_at,
            Enrollment.not_before,
        )
        .where(
            Enrollment.subscriber_id == subscriber.id,
            Enrollment.state.in_((ENROLLED_ACTIVE, QUEUED)),
        )
        .order_by(Enrollment.position, Enrollment.id)
    ).all()
    active: list[rule.Place] = []
    waiting: list[rule.Place] = []
    letters: list[rule.Letter] = []
    for sid, state, part, due, start in rows:
        s = cat.series[sid]
        if s.state != LIVE:
            continue
        if s.kind == BROADCAST_KIND:
            if state == ENROLLED_ACTIVE and due is not None:
                letters.append(rule.Letter(sid, due))
        elif state == ENROLLED_ACTIVE:
            active.append(rule.Place(cat.times[sid], part, due, start))
        else:
            waiting.append(rule.Place(cat.times[sid], part, None, start))
    sent = session.scalars(
        select(Delivery.scheduled_for)
        .join(Series, Series.id == Delivery.series_id)
        .where(
            Delivery.subscriber_id == subscriber.id,
            Series.kind == BROADCAST_KIND,
            Delivery.status.in_((CLAIMED, SENT, RETRY)),
            Delivery.scheduled_for >= now - NEAR,
        )
    )
    return rule.Queue(reader, (*active, *waiting), tuple(letters), taken_days(sent, reader.zone))
