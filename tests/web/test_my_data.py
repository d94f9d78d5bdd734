"""Email me my data, on the preference page: the data goes by email to the subscribed address
only (never onto the page), as JSON, once per address within the cooldown."""

from __future__ import annotations

import email
import email.policy
import json
import re

from sqlalchemy import select
from web_helpers import add_series, client, csrf, outbox

from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.services import roster
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber


def test_email_me_my_data(settings: Settings) -> None:
    add_series(settings, "myths", "Common myths", parts=2, order=1)
    roster.add_subscriber(
        settings, email="ana@example.org", name="Ana", timezone="Europe/London", confirmed=True
    )
    with session_scope(settings.database_url) as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email_key == "ana@example.org"))
        assert sub is not None
        link = "/preferences/" + tokens.make_token(settings.secret, "preferences", sub.public_id)
    with client(settings) as c:
        page = c.get(link)
        assert "Email me my data" in page.text
        sent = c.post(f"{link}/data", data={"csrf_token": csrf(c, link)})
        assert sent.status_code == 200 and "on its way" in sent.text
        assert "ana@example.org" not in sent.text and "Europe/London" not in sent.text
        again = c.post(f"{link}/data", data={"csrf_token": csrf(c, link)})
        assert again.status_code == 200  # the same page, no second email (cooldown)
        assert c.post(f"{link}/data", data={}).status_code == 400  # CSRF token needed
        bad = c.post("/preferences/not-a-token/data", data={"csrf_token": csrf(c, link)})
        assert bad.status_code == 400
    mails = [m for m in outbox(settings) if m.subject.startswith("Your data")]
    assert len(mails) == 1 and "ana@example.org" in mails[0].to
    body = mails[0].text
    assert "{" not in body  # words, not JSON
    assert "Email address: ana@example.org" in body and "Time zone: Europe/London" in body
    assert "- Common myths: active, next part 1" in body
    message = email.message_from_bytes(mails[0].path.read_bytes(), policy=email.policy.default)
    [attached] = list(message.iter_attachments())  # type: ignore[attr-defined]
    assert attached.get_filename() == "your-data.json"
    assert attached.get_content_type() == "application/json"
    data = json.loads(attached.get_content())
    assert data["subscriber"]["email"] == "ana@example.org"
    assert data["subscriber"]["timezone"] == "Europe/London"
    assert [e["series"] for e in data["enrollments"]] == ["myths"]
    assert re.search(r"call or text 988", " ".join(mails[0].html.split()))


def test_my_data_only_for_active_or_unsubscribed_readers_and_the_same_page(
    settings: Settings,
) -> None:
    add_series(settings, "myths", "Common myths", parts=2, order=1)
    statuses = ("active", "unsubscribed", "bounced", "complained")
    pages, tokens_of = {}, {}
    for status in statuses:
        roster.add_subscriber(settings, email=f"{status}@example.org", confirmed=True)
        with session_scope(settings.database_url) as s:
            sub = s.scalar(
                select(Subscriber).where(Subscriber.email_key == f"{status}@example.org")
            )
            assert sub is not None
            sub.status = status
            tokens_of[status] = tokens.make_token(settings.secret, "preferences", sub.public_id)
    with client(settings) as c:
        for status, token in tokens_of.items():
            link = f"/preferences/{token}"
            form = csrf(c, link)
            sent = c.post(f"{link}/data", data={"csrf_token": form})
            page = sent.text.replace(token, "TOKEN").replace(form, "CSRF")
            pages[status] = (sent.status_code, page)
    assert len(set(pages.values())) == 1 and pages["active"][0] == 200  # no oracle
    mails = [m for m in outbox(settings) if m.subject.startswith("Your data")]
    got = {status for status in statuses for m in mails if f"{status}@example.org" in m.to}
    assert len(mails) == 2 and got == {"active", "unsubscribed"}
