"""End to end: signup -> confirm -> `newsletter tick --now` at the first slot -> the article
email's preferences and one-click unsubscribe links work, and the next tick sends nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys

import pytest
from sqlalchemy import select
from web_helpers import LINK_RE, client, csrf, outbox

from newsletter.store.db import session_scope
from newsletter.store.models import ENROLLED_ACTIVE, Enrollment, Part, Series, Subscriber

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process (it reads the NEWSLETTER_* the settings exported)."""
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def tick(at: dt.datetime) -> dict[str, int]:
    out = cli("tick", "--now", at.isoformat(), "--json").stdout
    return json.loads(out.strip().splitlines()[-1])


def test_signup_confirm_tick_then_links_in_the_article_work(settings):
    cli("init")  # migrations, the shipped series synced and queued
    with client(settings) as c:
        # signup and confirmation, as a browser would
        response = c.post(
            "/subscribe",
            data={
                "csrf_token": csrf(c),
                "email": "noor@example.org",
                "name": "Noor",
                "timezone": "Asia/Kolkata",
            },
        )
        assert response.status_code == 400  # no series chosen: the form asks again
        response = c.post(
            "/subscribe",
            data={
                "csrf_token": csrf(c),
                "email": "noor@example.org",
                "name": "Noor",
                "timezone": "Asia/Kolkata",
                "series": ["myths-about-psychotherapy", "co-created-process"],
            },
        )
        assert response.status_code == 200
        confirm = outbox(settings)[-1].link("confirm")
        page = c.post(confirm, data={"csrf_token": csrf(c, confirm)})
        assert page.status_code == 200 and 'title="Asia/Kolkata"' in page.text  # zone id on hover

        with session_scope(settings.database_url) as s:
            sub = s.scalar(select(Subscriber).where(Subscriber.email_key == "noor@example.org"))
            row = s.execute(
                select(Enrollment, Series)
                .join(Series, Series.id == Enrollment.series_id)
                .where(Enrollment.subscriber_id == sub.id, Enrollment.state == ENROLLED_ACTIVE)
            ).one()
            first_slot, slug = row[0].next_due_at, row[1].slug
        assert slug == "myths-about-psychotherapy"
        mails_before = len(outbox(settings))

        # nothing is due a minute before the slot; at the slot, part 1 goes out
        assert tick(first_slot - dt.timedelta(minutes=1))["sent"] == 0
        summary = tick(first_slot)
        assert summary["sent"] == 1 and summary["failed"] == 0
        mails = outbox(settings)
        assert len(mails) == mails_before + 1
        article = mails[-1]
        assert "noor@example.org" in article.to and "Noor" in article.text
        assert "noor" not in article.subject.lower()

        # the list headers: one-click unsubscribe (RFC 8058)
        assert article.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        match = re.fullmatch(
            r"<(https://news\.example\.org/unsubscribe/[^>]+)>", article.headers["List-Unsubscribe"]
        )
        assert match, article.headers["List-Unsubscribe"]
        header_link = match.group(1).removeprefix("https://news.example.org")

        # the preferences link in the article works and shows only this person's address, masked
        prefs = article.link("preferences")
        page = c.get(prefs)
        assert page.status_code == 200 and "n•••@example.org" in page.text
        assert 'value="weekly" checked' in page.text
        # the unsubscribe link in the body works too (a page with one button)
        body_unsub = article.link("unsubscribe")
        assert c.get(body_unsub).status_code == 200
        assert {m.group(1) for m in LINK_RE.finditer(article.html)} >= {
            "preferences",
            "unsubscribe",
        }

        # the "view in browser" page exists now that part 1 was published
        with session_scope(settings.database_url) as s:
            published = s.scalar(
                select(Part.first_sent_at)
                .join(Series, Series.id == Part.series_id)
                .where(Series.slug == slug, Part.number == 1)
            )
        assert published is not None
        assert c.get(f"/archive/{slug}/1").status_code == 200

    # a mail provider's one-click POST: no cookies, no CSRF token, just the RFC 8058 body
    with client(settings) as provider:
        response = provider.post(
            header_link,
            content="List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200
    with session_scope(settings.database_url) as s:
        status = s.scalar(
            select(Subscriber.status).where(Subscriber.email_key == "noor@example.org")
        )
    assert status == "unsubscribed"

    # immediate: a tick a second later, and at the next slot, sends this address nothing
    assert tick(first_slot + dt.timedelta(seconds=1))["sent"] == 0
    assert tick(first_slot + dt.timedelta(days=7, minutes=1))["sent"] == 0
    assert len(outbox(settings)) == mails_before + 1
