"""Admin pages: login, logout, wrong password, rate limit, CSRF, session expiry, auth on every route."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from time_machine import TimeMachineFixture
from web_helpers import csrf, sign_in

from newsletter.content import series as content
from newsletter.core.config import Settings
from newsletter.services import auth
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import ACTIVE, PENDING, AppState, Subscriber, Suppression
from newsletter.web.app import create_app

PASSWORD = "a calm and long password"
BASE = "https://news.example.org"


@pytest.fixture
def admin_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})


@pytest.fixture
def app(admin_settings: Settings) -> FastAPI:
    with session_scope(admin_settings.database_url) as session:
        series_store.sync(session, content.load_all(admin_settings.schedules_dir))
    return create_app(admin_settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE, follow_redirects=False) as c:
        yield c


def login(client: TestClient, password: str = PASSWORD) -> int:
    token = csrf(client, "/admin/login")
    r = client.post("/admin/login", data={"csrf_token": token, "password": password})
    return r.status_code


@pytest.fixture
def signed_in(client: TestClient) -> TestClient:
    sign_in(client, PASSWORD)
    return client


def test_login_sets_strict_cookie_and_opens_dashboard(client: TestClient) -> None:
    assert client.get("/admin").status_code == 303
    token = csrf(client, "/admin/login")
    r = client.post("/admin/login", data={"csrf_token": token, "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    cookie = next(
        h for h in r.headers.get_list("set-cookie") if h.startswith(auth.SESSION_COOKIE + "=")
    )
    lower = cookie.lower()
    assert "httponly" in lower and "samesite=lax" in lower and "secure" in lower
    assert "max-age=" in lower
    page = client.get("/admin")
    assert page.status_code == 200
    assert "This week" in page.text and "Coming up" in page.text
    assert page.headers["cache-control"] == "no-store"


def test_wrong_password_refused(client: TestClient) -> None:
    assert login(client, "not the password") == 401
    assert client.get("/admin").status_code == 303
    assert login(client, "") == 401


def test_login_rate_limited(client: TestClient) -> None:
    for _ in range(auth.LOGIN_LIMIT):
        assert login(client, "guess") == 401
    # Even the right password waits once the limit is reached.
    token = csrf(client, "/admin/login")
    r = client.post("/admin/login", data={"csrf_token": token, "password": PASSWORD})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0
    assert auth.SESSION_COOKIE not in r.cookies


def test_csrf_missing_or_wrong_is_refused(signed_in: TestClient) -> None:
    client = signed_in
    r = client.post("/admin/login", data={"password": PASSWORD})
    assert r.status_code == 400
    r = client.post("/admin/series/myths-about-psychotherapy/pause", data={})
    assert r.status_code == 400
    r = client.post("/admin/logout", data={"csrf_token": "forged"})
    assert r.status_code == 400
    assert client.get("/admin").status_code == 200  # still signed in


def test_logout(signed_in: TestClient) -> None:
    stolen = signed_in.cookies.get(auth.SESSION_COOKIE)
    assert stolen
    token = csrf(signed_in, "/admin")
    r = signed_in.post("/admin/logout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/admin/login"
    assert signed_in.get("/admin").status_code == 303
    # a copy of the old cookie is no good after logout either
    signed_in.cookies.set(auth.SESSION_COOKIE, stolen, domain="news.example.org")
    assert signed_in.get("/admin").status_code == 303


def test_session_expires(
    client: TestClient, admin_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = auth.clock()
    monkeypatch.setattr(auth, "clock", lambda: real - auth.SESSION_SECONDS - 60)
    assert login(client) == 303
    monkeypatch.setattr(auth, "clock", lambda: real)
    r = client.get("/admin")
    assert r.status_code == 303 and r.headers["location"] == "/admin/login"
    # a forged cookie is no better
    client.cookies.set(auth.SESSION_COOKIE, "eyJ2IjoxfQ.forged.sig", domain="news.example.org")
    assert client.get("/admin").status_code == 303


def test_session_ends_when_the_password_source_changes(
    signed_in: TestClient, admin_settings: Settings
) -> None:
    """Issue 13 #9: a cookie made under one password is refused once the password is another."""
    cookie = signed_in.cookies.get(auth.SESSION_COOKIE)
    assert cookie

    def admin_with_cookie(settings: Settings) -> tuple[int, str]:
        with TestClient(create_app(settings), base_url=BASE, follow_redirects=False) as c:
            c.cookies.set(auth.SESSION_COOKIE, cookie, domain="news.example.org")
            r = c.get("/admin")
            return r.status_code, r.headers.get("location", "")

    # restarted with the same NEWSLETTER_ADMIN_PASSWORD: still signed in
    assert admin_with_cookie(admin_settings) == (200, "")
    # restarted with a new NEWSLETTER_ADMIN_PASSWORD: the old cookie leads to the login page
    changed = admin_settings.model_copy(
        update={"admin_password": SecretStr("a different long password")}
    )
    assert admin_with_cookie(changed) == (303, "/admin/login")
    # and back to the old value: the cookie was made under it, so it works again until it expires
    assert admin_with_cookie(admin_settings) == (200, "")
    # the stored Argon2 hash replaced behind the app's back (a restored backup, another tool):
    # the fingerprint changes even though no one ended the sessions
    with session_scope(admin_settings.database_url) as db:
        db.merge(AppState(key=auth.PASSWORD_KEY, value=auth.hash_password("stored long password")))
    assert signed_in.get("/admin").status_code == 303
    assert signed_in.get("/admin/login").status_code == 200  # the login page, not a redirect
    assert login(signed_in, "stored long password") == 303
    assert signed_in.get("/admin").status_code == 200


def all_routes(app: FastAPI) -> list[Any]:
    """Every endpoint route with its full path (FastAPI may keep included routers lazy)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: routes are already flat
        return [r for r in app.routes if isinstance(r, APIRoute)]
    return [
        ctx
        for ctx in iter_route_contexts(app.routes)
        if isinstance(ctx.original_route, APIRoute) and ctx.path
    ]


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_admin_and_api_route_needs_auth(app: FastAPI, client: TestClient) -> None:
    """Walk the route table: nothing under /admin or /api answers without a login or token."""
    open_paths = {("GET", "/admin/login"), ("POST", "/admin/login"), ("POST", "/admin/login/code")}
    # reached by a link instead of a password (tests/web/test_admin_setup.py checks each link)
    open_paths |= {
        (method, f"/admin/{link}")
        for method in ("GET", "POST")
        for link in ("setup/{token}", "invite/{token}", "reset/{token}", "reset")
    }
    checked = 0
    for route in all_routes(app):
        if not route.path.startswith(("/admin", "/api")):
            continue
        for method in route.methods or ():
            if (method, route.path) in open_paths or method == "HEAD":
                continue
            r = client.request(method, _fill(route.path))
            checked += 1
            if route.path.startswith("/api"):
                assert r.status_code == 401, (method, route.path, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer"
            else:
                assert r.status_code in (303, 400), (method, route.path, r.status_code)
                if r.status_code == 303:
                    assert r.headers["location"] == "/admin/login"
                else:  # a POST without a CSRF token never reaches the handler either
                    assert method == "POST"
            # and a wrong bearer token is no better
            if route.path.startswith("/api"):
                r = client.request(
                    method, _fill(route.path), headers={"Authorization": "Bearer nl_wrong"}
                )
                assert r.status_code == 401
    assert checked >= 25


def test_pages_render(signed_in: TestClient) -> None:
    for path in (
        "/admin",
        "/admin/series",
        "/admin/subscribers",
        "/admin/subscribers/new",
        "/admin/import",
        "/admin/series/myths-about-psychotherapy/1",
    ):
        r = signed_in.get(path)
        assert r.status_code == 200, (path, r.text[:300])
    frame = signed_in.get("/admin/series/myths-about-psychotherapy/1/email.html")
    assert frame.status_code == 200
    assert "frame-ancestors 'self'" in frame.headers["content-security-policy"]
    assert "script-src" not in frame.headers["content-security-policy"]
    assert frame.headers["content-security-policy"].split(";")[0] == "sandbox"
    assert "Sample Reader" in frame.text
    assert signed_in.get("/admin/series/no-such/1").status_code == 404
    assert signed_in.get("/admin/subscribers/999999").status_code == 404


def test_add_search_erase_subscriber(signed_in: TestClient, admin_settings: Settings) -> None:
    client = signed_in
    token = csrf(client, "/admin/subscribers/new")
    r = client.post(
        "/admin/subscribers",
        data={"csrf_token": token, "email": "Ana@Example.org", "name": "Ana", "timezone": ""},
    )
    assert r.status_code == 303, r.text[:500]
    detail = r.headers["location"]
    assert "@" not in detail
    page = client.get(detail)
    # stored as email_validator normalises it (domain lower-cased), as a signup stores it
    assert "Ana@example.org" in page.text and "pending" in page.text
    outbox = list(admin_settings.outbox_dir.glob("*.eml"))
    assert len(outbox) == 1  # the confirmation email
    r = client.post("/admin/subscribers/search", data={"csrf_token": token, "q": "ana@example"})
    assert r.status_code == 200 and "Ana@example.org" in r.text
    assert "1 person found" in r.text
    # duplicates are refused with a message, not a crash
    r = client.post("/admin/subscribers", data={"csrf_token": token, "email": "ana@example.org"})
    assert r.status_code == 400 and "already" in r.text
    # erase needs the word typed
    r = client.post(detail + "/erase", data={"csrf_token": token, "confirm": ""})
    assert r.status_code == 303
    with session_scope(admin_settings.database_url) as session:
        assert session.scalar(select(Subscriber)) is not None
    r = client.post(detail + "/erase", data={"csrf_token": token, "confirm": "ERASE"})
    assert r.status_code == 303
    with session_scope(admin_settings.database_url) as session:
        assert session.scalar(select(Subscriber)) is None
        assert session.scalar(select(Suppression)) is not None
    r = client.post("/admin/subscribers", data={"csrf_token": token, "email": "ana@example.org"})
    assert r.status_code == 400 and "erased" in r.text


def test_import_dry_run_then_import(signed_in: TestClient, admin_settings: Settings) -> None:
    client = signed_in
    token = csrf(client, "/admin/import")
    data = "\ufeffemail;name;timezone\nb@example.org;Bo;Europe/Paris\nB@example.org;Bo;\nbad;x;\n"
    r = client.post(
        "/admin/import",
        data={"csrf_token": token},
        files={"file": ("list.csv", data.encode("utf-8"), "text/csv")},
    )
    assert r.status_code == 200, r.text[:500]
    assert "nothing has changed yet" in r.text
    with session_scope(admin_settings.database_url) as session:
        assert session.scalar(select(Subscriber)) is None
    action = re.search(r'action="(/admin/import/[^"]+)"', r.text)
    assert action
    r = client.post(action.group(1), data={"csrf_token": token})
    assert r.status_code == 200 and "Import done" in r.text
    with session_scope(admin_settings.database_url) as session:
        subs = list(session.scalars(select(Subscriber)))
        assert [s.email_key for s in subs] == ["b@example.org"]
        assert subs[0].status == PENDING and subs[0].timezone == "Europe/Paris"
    # the upload is gone once used
    r = client.post(action.group(1), data={"csrf_token": token})
    assert r.status_code == 303


def test_export_streams(signed_in: TestClient, admin_settings: Settings) -> None:
    with session_scope(admin_settings.database_url) as session:
        session.add(
            Subscriber(
                public_id="p1",
                email="c@example.org",
                email_key="c@example.org",
                name="Cé",
                timezone="Europe/London",
                status=ACTIVE,
            )
        )
    r = signed_in.get("/admin/export.csv")
    assert r.status_code == 200 and "c@example.org" in r.text and "Cé" in r.text
    assert r.headers["cache-control"] == "no-store"
    r = signed_in.get("/admin/export.json")
    assert r.json()[0]["email"] == "c@example.org"


def test_dashboard_answers_what_next_who_and_did_it_work(
    client: TestClient, admin_settings: Settings, time_machine: TimeMachineFixture
) -> None:
    import datetime as dt

    from newsletter.engine import series_queue
    from newsletter.services import roster
    from newsletter.store.halt import halt
    from newsletter.store.models import FAILED, Delivery, Series

    settings = admin_settings
    # Monday noon in New York: the first slot (Tuesday 09:00 there) is in the dashboard's week.
    # On a Tuesday after 09:00 it is a week out, past the 7 days shown: pinned, not the wall clock.
    now = dt.datetime(2027, 3, 1, 17, 0, tzinfo=dt.UTC)
    time_machine.move_to(now, tick=True)
    signed_in = client
    assert login(signed_in) == 303  # after the move: the session is stamped with this clock
    with session_scope(settings.database_url) as session:
        series_queue.queue_series(session, "myths-about-psychotherapy", None, now)
    ids = [
        roster.add_subscriber(settings, email=f"p{i}@example.org", confirmed=True, now=now)
        for i in range(3)
    ]
    with session_scope(settings.database_url) as session:
        series_id = session.scalar(
            select(Series.id).where(Series.slug == "myths-about-psychotherapy")
        )
        assert series_id is not None
        session.add(
            Delivery(
                subscriber_id=ids[0],
                series_id=series_id,
                part_number=1,
                status=FAILED,
                scheduled_for=now,
                attempts=3,
                last_error="550 mailbox unavailable",
            )
        )
    page = signed_in.get("/admin").text
    assert "Common Myths About Psychotherapy, part 1" in page  # next out
    assert "to 3 people" in page
    assert "Myth 1: Going to therapy means you&#39;re weak" in page  # this week's cohort
    assert "p0@example.org" in page and "550 mailbox unavailable" in page  # the failure
    assert "Sending is stopped" not in page
    with session_scope(settings.database_url) as session:
        halt(session, "SendGrid refused the API key (401)")
    page = signed_in.get("/admin").text
    assert "Sending is stopped" in page and "refused the API key" in page
    token = csrf(signed_in, "/admin")
    r = signed_in.post("/admin/sending/resume", data={"csrf_token": token})
    assert r.status_code == 303
    assert "Sending is stopped" not in signed_in.get("/admin").text


def test_test_send_pause_resume_and_reload_errors(
    signed_in: TestClient, admin_settings: Settings, tmp_path: Path
) -> None:
    import datetime as dt
    import email
    import shutil
    from email import policy

    from newsletter.queue.dueset import RedisQueue
    from newsletter.services import roster
    from newsletter.store.models import LIVE, PAUSED, Series

    settings = admin_settings
    slug = "myths-about-psychotherapy"
    token = csrf(signed_in, f"/admin/series/{slug}/2")
    r = signed_in.post(
        f"/admin/series/{slug}/2/test", data={"csrf_token": token, "to": "me@example.org"}
    )
    assert r.status_code == 303
    mails = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in settings.outbox_dir.glob("*.eml")
    ]
    assert [str(m["Subject"]) for m in mails] == ["[Test] Myth 2: Therapy takes a long time"]
    assert "me@example.org" in str(mails[0]["To"])
    r = signed_in.post(f"/admin/series/{slug}/2/test", data={"csrf_token": token, "to": "nope"})
    assert r.status_code == 303 and len(list(settings.outbox_dir.glob("*.eml"))) == 1

    # pause for everyone: out of the Redis queue; resume: back in
    from newsletter.engine import series_queue

    now = dt.datetime.now(dt.UTC)
    with session_scope(settings.database_url) as session:
        series_queue.queue_series(session, slug, None, now)
    roster.add_subscriber(settings, email="q@example.org", confirmed=True, now=now)
    queue = RedisQueue(settings)
    assert queue.redis.zcard(queue.due_key) == 1
    assert (
        signed_in.post(f"/admin/series/{slug}/pause", data={"csrf_token": token}).status_code == 303
    )
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(Series.state).where(Series.slug == slug)) == PAUSED
    assert queue.redis.zcard(queue.due_key) == 0
    assert "paused for everyone" in signed_in.get("/admin/series").text
    assert (
        signed_in.post(f"/admin/series/{slug}/resume", data={"csrf_token": token}).status_code
        == 303
    )
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(Series.state).where(Series.slug == slug)) == LIVE
    assert queue.redis.zcard(queue.due_key) == 1

    # reload: a broken file shows file:line, nothing changes
    broken = tmp_path / "schedules"
    shutil.copytree(settings.schedules_dir, broken)
    yaml = broken / slug / "series.yaml"
    yaml.write_text(yaml.read_text().replace("send_day: tuesday", "send_day: someday"))
    other = settings.model_copy(update={"schedules_dir": broken})
    with TestClient(create_app(other), base_url=BASE, follow_redirects=False) as client:
        assert login(client) == 303
        token = csrf(client, "/admin/series")
        r = client.post("/admin/series/reload", data={"csrf_token": token})
        assert r.status_code == 422
        assert "series.yaml:" in r.text and "nothing was changed" in r.text
    token = csrf(signed_in, "/admin/series")
    r = signed_in.post("/admin/series/reload", data={"csrf_token": token})
    assert r.status_code == 303
    assert "2 series read" in signed_in.get("/admin/series").text


def test_odd_ids_and_resend(signed_in: TestClient, admin_settings: Settings) -> None:
    for path in ("/admin/subscribers/99999999999999999999", "/admin/series/x/0"):
        assert signed_in.get(path).status_code in (400, 404, 422)
    from newsletter.services import roster

    sub_id = roster.add_subscriber(admin_settings, email="r@example.org")
    token = csrf(signed_in, f"/admin/subscribers/{sub_id}")
    r = signed_in.post(f"/admin/subscribers/{sub_id}/resend", data={"csrf_token": token})
    assert r.status_code == 303
    assert len(list(admin_settings.outbox_dir.glob("*.eml"))) == 2
    r = signed_in.post(f"/admin/subscribers/{sub_id}/unsubscribe", data={"csrf_token": token})
    assert r.status_code == 303
    r = signed_in.post(f"/admin/subscribers/{sub_id}/resend", data={"csrf_token": token})
    assert len(list(admin_settings.outbox_dir.glob("*.eml"))) == 2  # only pending people
    export = signed_in.get(f"/admin/subscribers/{sub_id}/export.json")
    assert export.json()["subscriber"]["status"] == "unsubscribed"
    assert "attachment" in export.headers["content-disposition"]


def test_invalidate_a_readers_links_from_their_page(
    signed_in: TestClient, admin_settings: Settings
) -> None:
    """The person page's button gives new links; old ones get the friendly page (issue 13 #6)."""
    from web_helpers import outbox

    from newsletter.services import roster

    sub_id = roster.add_subscriber(admin_settings, email="s@example.org")  # pending: mailed
    old = outbox(admin_settings)[-1]
    old_links = [old.link("preferences"), old.link("unsubscribe"), old.link("confirm")]
    assert signed_in.get(old_links[0]).status_code == 200
    page = signed_in.get(f"/admin/subscribers/{sub_id}").text
    assert "Invalidate this reader&#39;s links" in page or "Invalidate this reader's links" in page
    path = f"/admin/subscribers/{sub_id}/rotate-links"
    assert signed_in.post(path, data={"csrf_token": "forged"}).status_code == 400
    assert signed_in.get(old_links[0]).status_code == 200  # nothing rotated without CSRF
    token = csrf(signed_in, f"/admin/subscribers/{sub_id}")
    r = signed_in.post(path, data={"csrf_token": token})
    assert r.status_code == 303
    for link in old_links:
        response = signed_in.get(link)
        assert response.status_code == 404 and "This link doesn't work" in response.text
    signed_in.post(f"/admin/subscribers/{sub_id}/resend", data={"csrf_token": token})
    new = outbox(admin_settings)[-1]
    assert new.link("preferences") not in old_links
    assert signed_in.get(new.link("preferences")).status_code == 200
    assert signed_in.get(new.link("confirm")).status_code == 200
