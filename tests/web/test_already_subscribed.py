"""An active reader who signs up again gets an "already subscribed" email pointing to their
preferences; the page is exactly the one anyone gets, and nothing stored changes."""

from __future__ import annotations

import redis
from sqlalchemy import select
from web_helpers import add_series, client, csrf, outbox

from newsletter.core.config import Settings
from newsletter.services import roster
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber


def _form(c: object, email: str) -> dict[str, object]:
    return {
        "csrf_token": csrf(c),  # type: ignore[arg-type]
        "email": email,
        "name": "Someone Else",
        "timezone": "Asia/Tokyo",
        "series": ["myths"],
    }


def test_active_reader_signing_up_again_gets_a_note_and_nothing_changes(
    settings: Settings,
) -> None:
    add_series(settings, "myths", "Common myths", parts=2, order=1)
    roster.add_subscriber(
        settings, email="ana@example.org", name="Ana", timezone="Europe/London", confirmed=True
    )
    with session_scope(settings.database_url) as s:
        before = s.scalar(select(Subscriber).where(Subscriber.email_key == "ana@example.org"))
        assert before is not None
        kept = (before.name, before.timezone, before.consent_at)
    with client(settings) as c:
        again = c.post("/subscribe", data=_form(c, "ANA@example.org"))
        new = c.post("/subscribe", data=_form(c, "new@example.org"))
        twice = c.post("/subscribe", data=_form(c, "ana@example.org"))  # within the cooldown
        strip = lambda r: r.text.replace(csrf(c), "")  # noqa: E731
        assert again.status_code == new.status_code == twice.status_code == 200
        assert strip(again) == strip(new)  # the page reveals nothing
        assert "A link is already on its way" in twice.text  # and tells the truth
    mails = [m for m in outbox(settings) if "ana@example.org" in m.to]
    assert [m.subject for m in mails] == [
        f"You are already subscribed to {settings.from_name}"
    ]  # one only: the per-address cooldown holds for this email too
    note = mails[0]
    assert note.link("preferences")
    assert "confirm" not in note.text.lower().replace("confirmed", "")
    assert settings.care_note in " ".join(note.text.split())
    with session_scope(settings.database_url) as s:
        after = s.scalar(select(Subscriber).where(Subscriber.email_key == "ana@example.org"))
        assert after is not None and (after.name, after.timezone, after.consent_at) == kept


def test_every_signup_counts_the_cooldown_in_redis_mail_or_not(settings: Settings) -> None:
    """New, pending, active, complained or erased: the same Redis work after the response (the
    per-address cooldown counted), so nothing after the page tells them apart."""
    add_series(settings, "myths", "Common myths", parts=2, order=1)
    roster.add_subscriber(settings, email="pending@example.org")
    roster.add_subscriber(settings, email="active@example.org", confirmed=True)
    roster.add_subscriber(settings, email="spam@example.org", confirmed=True)
    with session_scope(settings.database_url) as s:
        spam = s.scalar(select(Subscriber).where(Subscriber.email_key == "spam@example.org"))
        assert spam is not None
        spam.status = "complained"
    roster.erase_email(settings, "erased@example.org")
    client_ = redis.Redis.from_url(str(settings.redis_url))
    pattern = f"{settings.redis_prefix}confirm:*"
    for key in client_.scan_iter(match=pattern):  # add_subscriber's own confirmations
        client_.delete(key)
    addresses = ["new@example.org", "pending@example.org", "active@example.org"]
    addresses += ["spam@example.org", "erased@example.org"]
    with client(settings) as c:
        for email in addresses:
            assert c.post("/subscribe", data=_form(c, email)).status_code == 200
    counted = sorted(k.decode() for k in client_.scan_iter(match=pattern))
    client_.close()
    assert len(counted) == 2 * len(addresses)  # a 10-minute and a daily counter per address
    assert {k.rsplit(":", 1)[1] for k in counted} == {"10m", "day"}
