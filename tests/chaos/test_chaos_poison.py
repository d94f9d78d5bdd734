"""A poison row: one reader whose send kills the sending process, every time.

After three crashes it is marked failed with the reason and that reader moves on; everyone
else in its batches gets the article exactly once (suspects are sent in smaller chunks after a
crash, so no innocent neighbour collects three crashes), and nothing stays stuck.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import MYTHS, World, minutes
from sqlalchemy import select

from newsletter.engine.reconcile import MAX_CRASHES, POISON_NOTE
from newsletter.store.db import session_scope
from newsletter.store.models import CLAIMED, FAILED, SENT, Delivery, Enrollment, Series, Subscriber

pytestmark = pytest.mark.chaos

PEOPLE = 300  # outbox, batch size 100: three chunks; the poison sits in the middle one


@pytest.fixture
def outbox_world(settings: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    from newsletter.core.config import get_settings, load_settings

    monkeypatch.setenv("NEWSLETTER_MAIL_BACKEND", "outbox")
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "100")
    get_settings.cache_clear()
    return World(load_settings(), tmp_path, None)


def outbox_counts(world: World) -> Counter[str]:
    """How many .eml files each delivery id has (a resend writes a second one)."""
    return Counter(
        p.name.split("Z-", 1)[1].split(".", 1)[0].split("-", 1)[0]
        for p in Path(world.settings.outbox_dir).glob("*.eml")
    )


def test_poison_row_fails_after_three_crashes_and_nobody_else_is_hurt(
    outbox_world: World,
) -> None:
    w = outbox_world
    people = w.seed(PEOPLE)
    poison = people[150]
    crashes = 0
    for step in range(1, 13):  # tick + reconcile rounds, a few simulated minutes apart
        summary = w.tick(minutes(step * 15), CHAOS_POISON=poison)
        if summary is None:
            crashes += 1
            w.expire_tick_lock()
        w.reconcile(minutes(step * 15 + 11))
        with session_scope(w.settings.database_url) as session:
            open_rows = session.scalar(
                select(Delivery.id).where(Delivery.status != SENT, Delivery.status != FAILED)
            )
            done = session.scalar(select(Delivery.id).where(Delivery.status == FAILED))
        if open_rows is None and done is not None:
            break
    assert crashes == MAX_CRASHES
    with session_scope(w.settings.database_url) as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.id, Delivery.status, Delivery.last_error)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .join(Series, Series.id == Delivery.series_id)
            .where(Series.slug == MYTHS, Delivery.part_number == 1)
        ).all()
        poison_place = session.scalar(
            select(Enrollment.next_part)
            .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
            .join(Series, Series.id == Enrollment.series_id)
            .where(Subscriber.email == poison, Series.slug == MYTHS)
        )
    by_email = {email: (did, status, error) for email, did, status, error in rows}
    assert len(by_email) == PEOPLE
    assert by_email[poison][1:] == (FAILED, POISON_NOTE)
    assert poison_place == 2  # the reader moved on to the next part
    others = {e: v for e, v in by_email.items() if e != poison}
    assert {status for _, status, _ in others.values()} == {SENT}
    assert CLAIMED not in {status for _, status, _ in by_email.values()}
    files = outbox_counts(w)
    assert str(by_email[poison][0]) not in files  # never written: it crashed each time
    assert all(files[str(did)] == 1 for did, _, _ in others.values()), [
        (e, files[str(did)]) for e, (did, _, _) in others.items() if files[str(did)] != 1
    ]
