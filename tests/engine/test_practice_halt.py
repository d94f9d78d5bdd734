"""Invariant 9: the practice's mistakes never cost a reader a part.

A bad practice value (a tab in the sender address, …) forced into the database behind the
Settings page's back: the next tick halts sending with the reason (dashboard, doctor, alert),
fails no row and moves no reader; after the fix each reader gets the part exactly once. A bad
reader address stays that reader's own permanent failure.
"""

from __future__ import annotations

import datetime as dt

import pytest
import redis
import web_helpers
from engine_support import add_person, enrollments, ledger, outbox_mails, ship, utc
from pydantic import SecretStr
from sqlalchemy import update

from newsletter.core.config import Settings
from newsletter.core.vocabulary import HALT_PRACTICE
from newsletter.engine.tick import tick
from newsletter.mail.mime import PRACTICE_CHECKS
from newsletter.services import alerts, doctor
from newsletter.store import practice
from newsletter.store.db import session_scope
from newsletter.store.halt import halted
from newsletter.store.models import FAILED, SENT, PracticeSetting, Subscriber
from newsletter.store.practice import effective_settings as effective

# Each tick here is an entry point: it gets the effective settings, as a worker's task makes them.

MONDAY = utc(2027, 3, 1, 12)
TUESDAY_9 = utc(2027, 3, 2, 9)  # the Myths series' first slot, in UTC and London alike
HOUR = dt.timedelta(hours=1)
PASSWORD = "a calm and long password"
LABELS = {name: label for name, label, _ in PRACTICE_CHECKS}
# setting -> (a value the old Settings page let through, its fix)
BAD_AND_FIXED = {
    "from_email": ("news\t@calm.example.org", "news@calm.example.org"),
    "reply_to": ("office@calm.example.org\u2028", "office@calm.example.org"),
    "from_name": ("Calm\x0bPractice", "Calm Practice"),
    "postal_address": ("4 Quiet Lane\x85Harbour Town", "4 Quiet Lane, Harbour Town"),
}


def _force(settings: Settings, key: str, value: str) -> None:
    """A saved practice value written straight to the table (no checks), seen at once."""
    with session_scope(settings.database_url) as db:
        db.add(PracticeSetting(key=key, value=value, updated_at=MONDAY))
    practice.forget()


def _readers(settings: Settings) -> list[int]:
    ship(settings, MONDAY)
    return [add_person(settings, MONDAY, zone) for zone in ("UTC", "Europe/London", "UTC")]


def _all_at_part(settings: Settings, readers: list[int], part: int) -> bool:
    return all(enrollments(settings, sid)[0].next_part == part for sid in readers)


def _current_halt(settings: Settings):
    with session_scope(settings.database_url) as db:
        return halted(db, settings)


@pytest.mark.parametrize("key", BAD_AND_FIXED)
def test_a_bad_practice_value_halts_and_the_part_goes_out_once_after_the_fix(
    settings: Settings, key: str
) -> None:
    readers = _readers(settings)
    bad, fixed = BAD_AND_FIXED[key]
    _force(settings, key, bad)

    summary = tick(effective(settings), TUESDAY_9)
    assert (summary.sent, summary.failed) == (0, 0)
    assert [row for row in ledger(settings) if row[3] == FAILED] == []  # 0 rows failed
    assert _all_at_part(settings, readers, 1)  # every reader still at part 1
    assert outbox_mails(settings) == []
    halt = _current_halt(settings)
    assert halt is not None and halt.kind == HALT_PRACTICE
    assert LABELS[key] in halt.reason and f"NEWSLETTER_{key.upper()}" in halt.reason

    later = tick(
        effective(settings), TUESDAY_9 + 2 * HOUR
    )  # still broken: still nothing, nobody moved
    assert (later.sent, later.failed) == (0, 0) and _all_at_part(settings, readers, 1)

    clean, errors = practice.check({key: fixed})  # the fix, through the page's own checks
    assert errors == {}
    with session_scope(settings.database_url) as db:
        practice.save(db, clean)
    assert _current_halt(settings) is None  # lifted by itself: the values changed
    after = tick(effective(settings), TUESDAY_9 + 3 * HOUR)
    assert (after.sent, after.failed) == (len(readers), 0)
    assert tick(effective(settings), TUESDAY_9 + 4 * HOUR).sent == 0  # once, not again
    mails = outbox_mails(settings)
    assert len(mails) == len(readers) and len({str(m["To"]) for m in mails}) == len(readers)
    assert sorted((r[0], r[2], r[3]) for r in ledger(settings)) == sorted(
        (sid, 1, SENT) for sid in readers
    )
    assert _all_at_part(settings, readers, 2)


def test_the_halt_is_on_the_dashboard_in_doctor_and_in_the_alerts(settings: Settings) -> None:
    _readers(settings)
    _force(settings, "from_email", BAD_AND_FIXED["from_email"][0])
    tick(effective(settings), TUESDAY_9)
    reason = "sender address (NEWSLETTER_FROM_EMAIL or the Settings page)"

    admin = settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    c, _ = web_helpers.signed_in(admin, PASSWORD)
    with c:
        page = c.get("/admin").text
    assert "Sending is stopped" in page and reason in page and "U+0009" in page
    assert 'href="/admin/settings"' in page and "starts again by itself" in page

    findings = doctor.run(doctor.Context(effective(settings)), ["sending"]).findings
    assert [f.level for f in findings] == ["error", "error"]  # the value now, and the halt
    assert all(reason in f.message for f in findings)

    client = redis.Redis.from_url(str(settings.redis_url))
    (problem,) = [p for p in alerts.status(settings, client).problems if p.key == "halted"]
    assert reason in problem.detail and "Settings page" in problem.detail
    assert "refused the credentials" not in problem.detail


def test_a_bad_reader_address_fails_that_reader_only(settings: Settings) -> None:
    readers = _readers(settings)
    with session_scope(settings.database_url) as db:  # a reader's address, not the practice's
        db.execute(
            update(Subscriber).where(Subscriber.id == readers[0]).values(email="p\t@example.org")
        )
    summary = tick(effective(settings), TUESDAY_9)
    assert (summary.sent, summary.failed) == (len(readers) - 1, 1)
    assert _current_halt(settings) is None  # not the practice's mistake: no halt
    statuses = {r[0]: r[3] for r in ledger(settings)}
    assert statuses == {readers[0]: FAILED, readers[1]: SENT, readers[2]: SENT}
