"""Public pages over HTTP: signup, confirm, preferences, unsubscribe, archive, health, safety."""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer
from pydantic import SecretStr
from sqlalchemy import select
from web_helpers import add_series, client, csrf, csrf_in, dead_redis, outbox

from newsletter.core import tokens
from newsletter.queue.connection import redis_client
from newsletter.queue.dueset import RedisQueue
from newsletter.services import signup as signup_service
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    ENROLLED_ACTIVE,
    FORTNIGHTLY,
    PENDING,
    UNSUBSCRIBED,
    Enrollment,
    Subscriber,
)
from newsletter.web.app import create_app


@pytest.fixture
def site(settings):
    add_series(settings, "myths", "Common myths", parts=4, order=1, published=2)
    add_series(settings, "together", "Working together", parts=2, order=2)
    add_series(settings, "drafty", "Not yet", parts=1, order=3, state="draft")
    return settings


@pytest.fixture
def c(site):
    with client(site) as test_client:
        yield test_client


def form(c, **values):
    data = {
        "csrf_token": csrf(c),
        "email": "anna@example.org",
        "name": "Anna",
        "timezone": "Europe/London",
        "series": ["myths", "together"],
    }
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}


def subscriber(settings, email="anna@example.org"):
    with session_scope(settings.database_url) as s:
        return s.scalar(select(Subscriber).where(Subscriber.email_key == email.lower()))


def signup_and_confirm(c, settings, **values):
    assert c.post("/subscribe", data=form(c, **values)).status_code == 200
    confirm = outbox(settings)[-1].link("confirm")
    token = csrf(c, confirm)
    response = c.post(confirm, data={"csrf_token": token})
    assert response.status_code == 200
    return subscriber(settings, values.get("email", "anna@example.org"))


# --- signup --------------------------------------------------------------------------------


def test_signup_page_lists_live_series_and_zones(c):
    page = c.get("/")
    assert page.status_code == 200
    assert 'name="series" value="myths" checked' in page.text
    assert 'name="series" value="together" checked' in page.text
    assert "drafty" not in page.text
    assert '<option value="America/New_York" selected>' in page.text  # the default zone
    assert '<label for="email">' in page.text and 'name="website"' in page.text
    assert '<script src="/static/site.js"' in page.text
    assert "nl_csrf=" in page.headers["set-cookie"]
    assert "Secure" in page.headers["set-cookie"] and "HttpOnly" in page.headers["set-cookie"]


def test_signup_sends_confirmation_at_once(c, site):
    response = c.post("/subscribe", data=form(c))
    assert response.status_code == 200
    assert "check your email" in response.text
    (mail,) = outbox(site)
    assert mail.to.endswith("anna@example.org>") or mail.to == "anna@example.org"
    sub = subscriber(site)
    assert sub.status == PENDING and sub.consent_ip == "testclient"
    assert sub.requested_series == ["myths", "together"]
    assert "anna" not in mail.link("confirm")


def test_repeated_signup_looks_the_same_and_creates_no_duplicate(c, site):
    first = c.post("/subscribe", data=form(c))
    signup_and_confirm(c, site, email="bob@example.org")
    again = c.post("/subscribe", data=form(c, email="ANNA@example.org"))
    active_again = c.post("/subscribe", data=form(c, email="bob@example.org"))
    assert first.status_code == again.status_code == active_again.status_code == 200
    strip = lambda r: re.sub(r"\d\d:\d\d|in \d+ minutes?", "", r.text.replace(csrf(c), ""))  # noqa: E731
    # within the cooldown a pending and an active address get the same truthful page
    assert strip(again) == strip(active_again) != strip(first)
    assert "A link is already on its way" in again.text
    with session_scope(site.database_url) as s:
        assert len(s.scalars(select(Subscriber)).all()) == 2


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"email": "not-an-address"}, "email", "doesn&#39;t look like an email address"),
        ({"email": None}, "email", "Please enter your email address"),
        ({"email": "   "}, "email", "Please enter your email address"),
        ({"series": ["nonexistent"]}, "series", "isn&#39;t available"),
        ({"series": ["drafty"]}, "series", "isn&#39;t available"),
        ({"series": None}, "series", "at least one series"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "choose a time zone"),
        ({"name": "n" * 101}, "name", "under 100 characters"),
    ],
)
def test_bad_signup_input_gets_a_clear_message(c, site, values, field, message):
    response = c.post("/subscribe", data=form(c, **values))
    assert response.status_code == 400
    assert message in response.text
    assert f'href="#{field}"' in response.text  # the summary links to the field
    assert f'aria-describedby="{field}-error"' in response.text or (
        f'aria-describedby="{field}-hint {field}-error"' in response.text
    )
    assert outbox(site) == [] and subscriber(site) is None


def test_bad_signup_keeps_what_was_typed(c):
    response = c.post(
        "/subscribe", data=form(c, email="bad", name="<b>Anna</b>", series=["together"])
    )
    assert 'value="&lt;b&gt;Anna&lt;/b&gt;"' in response.text  # autoescaped
    assert 'value="myths" checked' not in response.text
    assert 'value="together" checked' in response.text


def test_missing_zone_uses_the_default(c, site):
    assert c.post("/subscribe", data=form(c, timezone=None)).status_code == 200
    assert subscriber(site).timezone == site.default_timezone


def test_signup_without_csrf_token_is_refused(c, site):
    data = form(c)
    del data["csrf_token"]
    response = c.post("/subscribe", data=data)
    assert response.status_code == 400 and "This form has expired" in response.text
    data["csrf_token"] = "0" * 64
    assert c.post("/subscribe", data=data).status_code == 400
    assert subscriber(site) is None


def test_csrf_token_from_another_browser_is_refused(c, site):
    token = csrf(c)
    with client(site) as other:
        other.get("/")
        response = other.post("/subscribe", data=form(c, csrf_token=token))
    assert response.status_code == 400 and subscriber(site) is None


def test_honeypot_looks_like_success_but_does_nothing(c, site):
    response = c.post("/subscribe", data=form(c, website="http://spam.example"))
    assert response.status_code == 200 and "check your email" in response.text
    assert subscriber(site) is None and outbox(site) == []


@pytest.mark.both_redis  # the system Redis 7 and the embedded 6.2 that `make run` starts
def test_signups_are_rate_limited_per_ip_in_redis(c, site):
    for i in range(10):
        assert c.post("/subscribe", data=form(c, email=f"p{i}@example.org")).status_code == 200
    response = c.post("/subscribe", data=form(c, email="p10@example.org"))
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0
    assert "short pause" in response.text
    # every limit key lives under a prefix (other test runs may share this Redis: theirs have
    # their own prefixes), and this run's are under its own
    every = redis_client(site).keys("*ratelimit*")
    assert all(re.match(r"nlt:[0-9a-f]+:", k) for k in every), every
    keys = [k for k in every if k.startswith(site.redis_prefix)]
    assert keys
    assert not any("testclient" in k for k in keys)  # the address is hashed
    assert 0 < redis_client(site).ttl(keys[0]) <= 3600  # the window ends: no lockout for good


@pytest.mark.both_redis
def test_signup_limit_counts_per_address_and_refuses_without_signing_up(site):
    app = create_app(site)
    with TestClient(app, base_url="https://testserver", client=("198.51.100.20", 5000)) as one:
        for i in range(10):
            assert (
                one.post("/subscribe", data=form(one, email=f"q{i}@example.org")).status_code == 200
            )
        refused = one.post("/subscribe", data=form(one, email="eleventh@example.org"))
    assert refused.status_code == 429 and subscriber(site, "eleventh@example.org") is None
    with TestClient(app, base_url="https://testserver", client=("198.51.100.21", 5000)) as other:
        ok = other.post("/subscribe", data=form(other, email="other@example.org"))
    assert ok.status_code == 200 and subscriber(site, "other@example.org") is not None


# --- confirmation --------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "kept"), [("keep", True), ("end", False)])
def test_resubscribing_asks_whether_to_keep_an_old_pause(site, time_machine, answer, kept):
    time_machine.move_to(dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC), tick=False)
    with client(site) as c:
        sub = signup_and_confirm(c, site)
        until = dt.date(2027, 4, 5)
        with session_scope(site.database_url) as s:
            row = s.get(Subscriber, sub.id)
            row.status, row.paused_until = "unsubscribed", until
        link = "/confirm/" + tokens.make_token(site.secret, "confirm", sub.public_id)
        page = c.get(link).text
        assert "you had paused the articles until Mon 5 Apr 2027. Keep that pause?" in page
        done = c.post(link, data={"csrf_token": csrf_in(page), "pause": answer})
        assert done.status_code == 200
    after = subscriber(site)
    assert after.status == "active" and after.paused_until == (until if kept else None)


def test_a_pending_signup_or_a_past_pause_is_not_asked_about(site, time_machine):
    time_machine.move_to(dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC), tick=False)
    with client(site) as c:
        c.post("/subscribe", data=form(c))
        assert "Keep that pause" not in c.get(outbox(site)[-1].link("confirm")).text
        sub = signup_and_confirm(c, site, email="bo@example.org")
        with session_scope(site.database_url) as s:
            row = s.get(Subscriber, sub.id)
            row.status, row.paused_until = "unsubscribed", dt.date(2027, 2, 1)
        link = "/confirm/" + tokens.make_token(site.secret, "confirm", sub.public_id)
        assert "Keep that pause" not in c.get(link).text


def test_confirm_get_changes_nothing_and_post_confirms(c, site):
    c.post("/subscribe", data=form(c))
    link = outbox(site)[0].link("confirm")
    page = c.get(link)
    assert page.status_code == 200 and "Yes, send me the articles" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert subscriber(site).status == PENDING
    response = c.post(link, data={"csrf_token": csrf(c, link)})
    assert response.status_code == 200
    sub = subscriber(site)
    assert sub.status == ACTIVE and sub.confirmed_at is not None
    with session_scope(site.database_url) as s:
        active = s.scalar(
            select(Enrollment).where(
                Enrollment.subscriber_id == sub.id, Enrollment.state == ENROLLED_ACTIVE
            )
        )
        due = active.next_due_at
    local = due.astimezone(ZoneInfo("Europe/London"))
    # the pages' one date style ("Tue 5 Jan 2027, 09:00"), in the reader's zone, saying whose
    assert (
        f"{local:%a} {local.day} {local:%b %Y}, 09:00, "
        '<span class="zone" title="Europe/London">UK (London)</span> time'
    ) in response.text
    # the queue has it at once
    assert (
        RedisQueue(site).redis.zscore(f"{site.redis_prefix}due", str(active.id)) == due.timestamp()
    )
    welcome = outbox(site)[-1]
    assert welcome.subject.startswith("Welcome")
    assert "(Europe/London)" in welcome.text
    # a second POST is harmless and sends no second welcome
    assert "already subscribed" in c.get(link).text
    again = c.post(link, data={"csrf_token": csrf(c)})
    assert again.status_code == 200 and "already subscribed" in again.text
    assert len(outbox(site)) == 2


def test_confirm_without_csrf_is_refused(c, site):
    c.post("/subscribe", data=form(c))
    link = outbox(site)[0].link("confirm")
    assert c.post(link).status_code == 400
    assert subscriber(site).status == PENDING


def test_tampered_and_expired_confirm_links_get_a_friendly_page(c, site):
    c.post("/subscribe", data=form(c))
    link = outbox(site)[0].link("confirm")
    tampered = link[:-3] + ("aaa" if not link.endswith("aaa") else "bbb")
    page = c.get(tampered)
    assert page.status_code == 400
    assert "This link doesn" in page.text and 'name="form" value="resend"' in page.text
    assert "Traceback" not in page.text
    old = URLSafeTimedSerializer(site.secret, salt="newsletter.confirm")
    public_id = subscriber(site).public_id
    real_time = time.time
    try:
        time.time = lambda: real_time() - 8 * 24 * 3600  # type: ignore[assignment]
        expired = old.dumps(public_id)
    finally:
        time.time = real_time  # type: ignore[assignment]
    page = c.get(f"/confirm/{expired}")
    assert page.status_code == 400 and "This link has expired" in page.text
    response = c.post(f"/confirm/{expired}", data={"csrf_token": csrf(c)})
    assert response.status_code == 400 and subscriber(site).status == PENDING
    # a link of another purpose does not confirm either
    unsub = tokens.make_token(site.secret, "unsubscribe", public_id)
    assert c.get(f"/confirm/{unsub}").status_code == 400


def test_link_for_unknown_subscriber_is_404(c, site):
    token = tokens.make_token(site.secret, "confirm", "0" * 32)
    page = c.get(f"/confirm/{token}")
    assert page.status_code == 404 and "Send me a new link" in page.text


def test_asking_for_a_new_link_reveals_nothing(c, site):
    c.post("/subscribe", data=form(c))
    c.post("/subscribe", data={"csrf_token": csrf(c), "form": "resend", "email": "zed@example.org"})
    known = c.post(
        "/subscribe", data={"csrf_token": csrf(c), "form": "resend", "email": "anna@example.org"}
    )
    unknown = c.post(
        "/subscribe", data={"csrf_token": csrf(c), "form": "resend", "email": "zed@example.org"}
    )
    assert known.status_code == unknown.status_code == 200
    strip = lambda r: re.sub(r"\d\d:\d\d|in \d+ minutes?", "", r.text.replace(csrf(c), ""))  # noqa: E731
    assert strip(known) == strip(unknown)  # both within their cooldown: the same page
    # anna's new link waits for the per-address cooldown; zed's first one went out
    sent_to = sorted("zed" if "zed@" in m.to else "anna" for m in outbox(site))
    assert sent_to == ["anna", "zed"]
    bad = c.post("/subscribe", data={"csrf_token": csrf(c), "form": "resend", "email": "nope"})
    assert bad.status_code == 400 and "Send me a new link" in bad.text


# --- preferences ---------------------------------------------------------------------------


def test_preferences_page_and_switch_to_fortnightly(c, site):
    sub = signup_and_confirm(c, site)
    link = outbox(site)[-1].link("preferences")  # from the welcome email
    page = c.get(link)
    assert page.status_code == 200 and "a•••@example.org" in page.text
    assert 'value="weekly" checked' in page.text
    assert page.headers["cache-control"] == "no-store"
    with session_scope(site.database_url) as s:
        before = s.scalar(
            select(Enrollment.next_due_at).where(
                Enrollment.subscriber_id == sub.id, Enrollment.state == ENROLLED_ACTIVE
            )
        )
    data = {
        "csrf_token": csrf(c, link),
        "series": ["myths", "together"],
        "takes_new_series": "1",
        "cadence": "fortnightly",
        "timezone": "America/Chicago",
        "name": "Annie",
        "paused_until": "",
    }
    response = c.post(link, data=data)
    assert response.status_code == 200 and "Saved." in response.text
    sub = subscriber(site)
    assert (sub.cadence, sub.timezone, sub.name) == (FORTNIGHTLY, "America/Chicago", "Annie")
    with session_scope(site.database_url) as s:
        row = s.scalar(
            select(Enrollment).where(
                Enrollment.subscriber_id == sub.id, Enrollment.state == ENROLLED_ACTIVE
            )
        )
        assert row.next_due_at != before  # new zone: a new time
        score = redis_client(site).zscore(f"{site.redis_prefix}due", str(row.id))
        assert score == row.next_due_at.timestamp()


def test_link_pages_mask_the_address(c, site):
    signup_and_confirm(c, site, email="anna.b@example.org", name=None)
    mail = outbox(site)[-1]
    for link in (mail.link("preferences"), mail.link("unsubscribe")):
        page = c.get(link)
        assert page.status_code == 200
        assert "a•••@example.org" in page.text
        assert "anna" not in page.text.lower()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cadence": "daily"}, "weekly or every two weeks"),
        ({"timezone": "Nowhere/Town"}, "choose a time zone"),
        ({"series": ["nonexistent"]}, "isn&#39;t available"),
        ({"series": None}, "at least one series"),
        ({"paused_until": "next week"}, "YYYY-MM-DD"),
        ({"paused_until": "2099-01-01"}, "up to a year"),
        ({"paused_until": "2020-01-01"}, "already come"),  # a past date, refused aloud
    ],
)
def test_bad_preferences_are_refused(c, site, values, message):
    signup_and_confirm(c, site)
    link = outbox(site)[-1].link("preferences")
    data = {
        "csrf_token": csrf(c, link),
        "series": ["myths"],
        "cadence": "weekly",
        "timezone": "Europe/London",
    }
    data.update(values)
    response = c.post(link, data={k: v for k, v in data.items() if v is not None})
    assert response.status_code == 400 and message in response.text
    assert subscriber(site).cadence == "weekly" and subscriber(site).timezone == "Europe/London"


def test_preferences_need_csrf_and_a_valid_token(c, site):
    signup_and_confirm(c, site)
    link = outbox(site)[-1].link("preferences")
    assert c.post(link, data={"cadence": "fortnightly"}).status_code == 400
    assert subscriber(site).cadence == "weekly"
    assert c.get(link + "x").status_code == 400
    assert c.get("/preferences/").status_code == 404


# --- unsubscribe ---------------------------------------------------------------------------


def unsubscribe_link(site):
    return outbox(site)[-1].link("unsubscribe")


def test_unsubscribe_page_offers_one_button_and_preferences(c, site):
    signup_and_confirm(c, site)
    link = unsubscribe_link(site)
    page = c.get(link)
    assert page.status_code == 200
    assert page.text.count('type="submit"') == 1
    assert "/preferences/" in page.text
    assert subscriber(site).status == ACTIVE  # GET changes nothing


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (None, None),
        ("List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"),
        ("", "application/x-www-form-urlencoded"),
    ],
)
def test_one_click_unsubscribe_needs_no_csrf(c, site, body, content_type):
    sub = signup_and_confirm(c, site)
    link = unsubscribe_link(site)
    with client(site) as mailbox_provider:  # no cookie, no CSRF token
        headers = {"content-type": content_type} if content_type else {}
        response = mailbox_provider.post(link, content=body, headers=headers)
    assert response.status_code == 200 and "You're unsubscribed" in response.text
    assert subscriber(site).status == UNSUBSCRIBED
    with session_scope(site.database_url) as s:
        ids = s.scalars(select(Enrollment.id).where(Enrollment.subscriber_id == sub.id)).all()
    due = redis_client(site).zrange(f"{site.redis_prefix}due", 0, -1)
    assert not set(map(str, ids)) & set(due)  # gone from the queue at once


def test_one_click_multipart_body_and_page_form_and_idempotence(c, site):
    signup_and_confirm(c, site)
    link = unsubscribe_link(site)
    r1 = c.post(link, files={"List-Unsubscribe": (None, "One-Click")})
    assert r1.status_code == 200
    sub = subscriber(site)
    assert sub.status == UNSUBSCRIBED
    first_time = sub.unsubscribed_at
    # Unsubscribing rotated the links: a second post on the old one (a mailbox provider
    # retrying) gets the friendly page and changes nothing.
    r2 = c.post(link, data={"csrf_token": csrf(c)})
    assert r2.status_code == 404 and "This link doesn't work" in r2.text
    assert subscriber(site).unsubscribed_at == first_time
    fresh = "/unsubscribe/" + tokens.make_token(
        site.secret, "unsubscribe", subscriber(site).public_id
    )
    assert c.post(fresh).status_code == 200
    assert subscriber(site).unsubscribed_at == first_time
    assert "already unsubscribed" in c.get(fresh).text


def test_unsubscribe_all_voids_every_older_link(c, site):
    """Links ride in every article (issue 13 #6): once the reader leaves, a forwarded one is dead."""
    before = signup_and_confirm(c, site)
    mail = outbox(site)[-1]
    old = [mail.link("preferences"), mail.link("unsubscribe")]
    assert all(c.get(path).status_code == 200 for path in old)
    c.post(old[1])
    after = subscriber(site)
    assert after.status == UNSUBSCRIBED and after.public_id != before.public_id
    for path in old:
        page = c.get(path)
        assert page.status_code == 404 and "This link doesn't work" in page.text
    prefs = old[0]
    response = c.post(prefs, data={"csrf_token": csrf(c), "action": "resubscribe"})
    assert response.status_code == 404 and subscriber(site).status == UNSUBSCRIBED


def _past_the_confirmation_cooldown(site):
    """The signup's confirmation started the 10-minute per-address cooldown; let it run out."""
    r = redis_client(site)
    for key in r.keys(f"{site.redis_prefix}confirm:*:10m"):
        r.delete(key)


def test_unsubscribe_with_tampered_token_is_refused(c, site):
    signup_and_confirm(c, site)
    link = unsubscribe_link(site)
    response = c.post(link[:-4] + "AAAA", content="List-Unsubscribe=One-Click")
    assert response.status_code in (400, 404)
    assert subscriber(site).status == ACTIVE


def test_resubscribe_from_a_preference_link_asks_for_a_fresh_confirmation(c, site):
    """Whoever holds the link must not switch the reader back on: double opt-in again."""
    signup_and_confirm(c, site)
    page = c.post(unsubscribe_link(site))
    assert "Unsubscribed by mistake?" in page.text
    prefs = re.search(r'action="(/preferences/[^"]+)"', page.text).group(1)  # the page's new link
    _past_the_confirmation_cooldown(site)
    mails = len(outbox(site))
    response = c.post(prefs, data={"csrf_token": csrf(c, prefs), "action": "resubscribe"})
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert "a•••@example.org" in response.text and "anna@example.org" not in response.text
    assert subscriber(site).status == UNSUBSCRIBED  # nothing changes before the click
    assert len(outbox(site)) == mails + 1
    confirm = outbox(site)[-1].link("confirm")
    response = c.post(confirm, data={"csrf_token": csrf(c, confirm)})
    assert response.status_code == 200
    back = subscriber(site)
    assert back.status == ACTIVE and back.consent_form == "confirm"  # consent at the click


def test_resubscribe_confirmations_keep_the_per_address_cooldown(c, site):
    signup_and_confirm(c, site)
    page = c.post(unsubscribe_link(site))
    prefs = re.search(r'action="(/preferences/[^"]+)"', page.text).group(1)
    _past_the_confirmation_cooldown(site)
    mails = len(outbox(site))
    for _ in range(3):
        response = c.post(prefs, data={"csrf_token": csrf(c, prefs), "action": "resubscribe"})
        assert response.status_code == 200 and "Check your inbox" in response.text
    assert len(outbox(site)) == mails + 1  # one per 10 minutes, however often it is pressed
    assert subscriber(site).status == UNSUBSCRIBED


# --- archive -------------------------------------------------------------------------------


def test_archive_lists_only_published_parts(c, site):
    page = c.get("/archive")
    assert page.status_code == 200
    assert "/archive/myths/1" in page.text and "/archive/myths/2" in page.text
    assert "/archive/myths/3" not in page.text and "/archive/together" not in page.text
    article = c.get("/archive/myths/2")
    assert article.status_code == 200 and "Common myths: part 2" in article.text
    assert "<em>emphasis</em>" in article.text
    assert "<script>alert(1)</script>" not in article.text  # raw HTML is escaped
    assert 'rel="prev"' in article.text and 'rel="next"' not in article.text
    for path in ("/archive/myths/3", "/archive/myths/99", "/archive/nope/1", "/archive/myths/x"):
        response = c.get(path)
        assert response.status_code == 404 and "couldn" in response.text


DATED = re.compile(r'<time[^>]* datetime="[^"]+">[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2} \d{4}</time>')


def test_every_archive_page_is_dated_and_has_a_subscribe_box(c, site):
    index, part = c.get("/archive").text, c.get("/archive/myths/2").text
    assert len(DATED.findall(index)) == 2 and len(DATED.findall(part)) == 1
    assert "Get new articles by email" in index and "Get this series by email" in part
    box = part.split('class="card subscribe-box"')[1]
    assert re.findall(r'name="series" value="([^"]+)"', box) == ["myths"]  # this series
    response = c.post(
        "/subscribe",
        data={
            "csrf_token": csrf_in(part),
            "email": "box@example.org",
            "timezone": "",
            "series": "myths",
        },
    )
    assert response.status_code == 200 and "check your email" in response.text
    [mail] = outbox(site)
    assert mail.to == "box@example.org"


def test_signing_up_again_within_the_cooldown_says_so(c, site):
    first = c.post("/subscribe", data=form(c))
    assert "Nearly there" in first.text
    again = c.post("/subscribe", data=form(c))
    assert again.status_code == 200 and "Nearly there" not in again.text
    text = html.unescape(again.text)
    assert "A link is already on its way" in text and "nothing new went out" in text
    assert re.search(r"asked for at \d\d:\d\d \(UK \(London\) time\)", text)
    assert re.search(r"another at \d\d:\d\d, in 10 minutes", text)
    assert len(outbox(site)) == 1  # the page tells the truth: one email
    other = c.post("/subscribe", data=form(c, email="someone.else@example.org"))
    assert "Nearly there" in other.text  # another address: its own cooldown


def test_archive_shows_no_subscriber_data(c, site):
    signup_and_confirm(c, site)
    for path in ("/archive", "/archive/myths/1"):
        assert "anna" not in c.get(path).text.lower()


# --- health, headers, errors ---------------------------------------------------------------


def test_healthz_checks_database_and_redis(c):
    response = c.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}  # the checks are for the token or the admin


def test_healthz_reports_a_dead_redis(site):
    app_client = client(site.model_copy(update={"metrics_token": SecretStr("health-token")}))
    app_client.app.state.redis = dead_redis()
    response = app_client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "failing": ["redis"]}
    named = app_client.get("/healthz", headers={"Authorization": "Bearer health-token"})
    assert named.status_code == 503 and named.json()["redis"].startswith("error")


@pytest.mark.parametrize("path", ["/", "/archive", "/healthz", "/nowhere", "/static/style.css"])
def test_security_headers_on_every_response(c, path):
    headers = c.get(path).headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["strict-transport-security"] == "max-age=31536000"  # the public URL is https


def test_pages_have_no_inline_scripts_or_styles(c, site):
    signup_and_confirm(c, site)
    pages = [
        "/",
        "/archive",
        "/archive/myths/1",
        outbox(site)[-1].link("preferences"),
        unsubscribe_link(site),
    ]
    for path in pages:
        text = c.get(path).text
        assert "<script>" not in text and "style=" not in text and "<style" not in text
        assert "onclick" not in text


def test_friendly_errors_never_show_a_stack_trace(c):
    page = c.get("/nowhere")
    assert page.status_code == 404 and "We couldn" in page.text and "<html" in page.text
    assert c.put("/subscribe").status_code == 405


def test_request_bodies_are_size_limited(c):
    response = c.post(
        "/subscribe", data={"csrf_token": csrf(c), "email": "a@example.org", "name": "x" * 70_000}
    )
    assert response.status_code == 413 and "more than we can accept" in response.text


def test_streamed_body_without_length_is_limited(c):
    def chunks():
        for _ in range(100):
            yield b"x" * 1024

    response = c.post(
        "/subscribe",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


def test_static_script_is_served(c):
    response = c.get("/static/site.js")
    assert response.status_code == 200 and "Intl.DateTimeFormat" in response.text


def test_signup_with_redis_down_looks_the_same_but_sends_no_confirmation(site):
    with client(site) as up:
        normal = up.post("/subscribe", data=form(up, email="bob@example.org"))
        normal_text = normal.text.replace(csrf(up), "")
    with client(site) as c:
        c.app.state.redis = dead_redis()
        response = c.post("/subscribe", data=form(c))
        text = response.text.replace(csrf(c), "")
    assert response.status_code == 200 and subscriber(site).status == PENDING
    assert text == normal_text
    # the per-address cooldown fails closed: only bob's confirmation went out
    assert len(outbox(site)) == 1


@pytest.mark.both_redis
def test_confirmation_emails_per_address_have_a_cooldown_whatever_the_ip(site):
    app = create_app(site)
    pages = set()
    for i in range(11):
        ip = f"198.51.100.{100 + i}"
        with TestClient(app, base_url="https://testserver", client=(ip, 5000)) as one:
            name = "Anna" if i == 0 else f"Attacker name {i}"  # Anna first, then 10 others
            response = one.post("/subscribe", data=form(one, name=name))
            assert response.status_code == 200
            page = response.text.replace(csrf(one), "")
            pages.add(re.sub(r"\d\d:\d\d|in \d+ minutes?", "", page))
    # the first answer says a link was sent, every later one within the cooldown says it was
    # asked for already (the truth for any address: the cooldown counts for every address,
    # subscribed or not, so the answers tell nothing about who is subscribed)
    assert len(pages) == 2
    assert len(outbox(site)) == 1  # one per address per 10 minutes
    assert "Attacker" not in outbox(site)[0].text and subscriber(site).name == "Anna"
    keys = [k for k in redis_client(site).keys(f"{site.redis_prefix}confirm:*")]
    assert keys and not any("anna" in k for k in keys)  # a keyed hash, never the address
    assert all(0 < redis_client(site).ttl(k) <= 86_400 for k in keys)


@pytest.mark.slow  # waits out Redis's cooldown five times
def test_confirmation_emails_per_address_stop_after_the_daily_limit(site, monkeypatch):
    monkeypatch.setattr(signup_service, "COOLDOWN_SECONDS", 1)
    with client(site) as c:
        for _ in range(5):
            assert c.post("/subscribe", data=form(c)).status_code == 200
            time.sleep(1.1)  # past the short cooldown: only the daily limit counts
    assert len(outbox(site)) == signup_service.DAILY_LIMIT == 3


def test_pending_subscriber_can_open_preferences_and_unsubscribe_from_the_confirmation(c, site):
    c.post("/subscribe", data=form(c, series=["together"]))
    mail = outbox(site)[0]
    page = c.get(mail.link("preferences"))
    assert page.status_code == 200 and "haven't confirmed" in page.text
    assert 'value="together" checked' in page.text and 'value="myths" checked' not in page.text
    assert c.post(mail.link("unsubscribe")).status_code == 200
    assert subscriber(site).status == UNSUBSCRIBED


def test_a_token_for_another_purpose_is_refused_everywhere(c, site):
    c.post("/subscribe", data=form(c))
    confirm_token = outbox(site)[0].link("confirm").split("/")[-1]
    assert c.get(f"/unsubscribe/{confirm_token}").status_code == 400
    assert c.post(f"/unsubscribe/{confirm_token}").status_code == 400
    assert c.get(f"/preferences/{confirm_token}").status_code == 400
    assert subscriber(site).status == PENDING


def test_an_unexpected_error_shows_a_calm_page_without_details(site, monkeypatch):
    from newsletter.services import signup

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(signup, "subscribe", boom)
    with TestClient(
        create_app(site), base_url="https://testserver", raise_server_exceptions=False
    ) as c:
        response = c.post("/subscribe", data=form(c))
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.text
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert response.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" in response.headers


def test_access_log_lines_carry_no_link_token(settings, caplog):
    """uvicorn logs every request path; a subscriber link's token must not reach the log."""
    import logging

    from newsletter.web.security import RedactTokens, redact_path

    create_app(settings)  # installs the filter on uvicorn's access logger
    logger = logging.getLogger("uvicorn.access")
    assert any(isinstance(f, RedactTokens) for f in logger.filters)
    token = tokens.make_token(settings.secret, "unsubscribe", "abc123")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        logger.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", f"/unsubscribe/{token}", "1.1", 200
        )
    assert token not in caplog.text and "/unsubscribe/…" in caplog.text
    assert redact_path(f"/preferences/{token}?x=1") == "/preferences/…?x=1"
    assert redact_path("/archive/myths/1") == "/archive/myths/1"


def test_link_pages_hand_services_values_never_rows(c, site, monkeypatch):
    # The pages hold a reader as `people.Person` (a frozen snapshot) and hand that back to the
    # services, which read the row themselves: no ORM row reaches web/.
    from newsletter.services import calendar, export, mailing, people, preferences

    handed: list[str] = []

    def watch(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            for value in (*args, *kwargs.values()):
                assert not isinstance(value, Subscriber), f"{name} got a row"
                if isinstance(value, people.Person):
                    handed.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for module, name in [
        (signup_service, "confirm"),
        (signup_service, "chosen_series"),
        (calendar, "next_date"),
        (calendar, "pause_running"),
        (preferences, "update_preferences"),
        (preferences, "unsubscribe"),
        (export, "subscriber_record"),
        (mailing, "send_welcome"),
        (people, "enrollment_ids"),
    ]:
        watch(module, name)
    signup_and_confirm(c, site)
    link = outbox(site)[-1].link("preferences")
    page = c.get(link)
    assert page.status_code == 200
    data = {"csrf_token": csrf(c, link), "series": ["myths"], "cadence": "weekly", "name": "A"}
    assert c.post(link, data={**data, "timezone": "Europe/London"}).status_code == 200
    assert c.post(link + "/data", data={"csrf_token": csrf(c, link)}).status_code == 200
    unsubscribe = outbox(site)[-1].link("unsubscribe")
    assert c.post(unsubscribe).status_code == 200
    assert set(handed) == {
        "confirm",
        "chosen_series",
        "next_date",
        "pause_running",
        "update_preferences",
        "unsubscribe",
        "subscriber_record",
        "send_welcome",
        "enrollment_ids",
    }
