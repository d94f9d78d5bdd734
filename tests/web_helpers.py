"""Helpers for the web tests: series rows, a TestClient with a CSRF cookie, the one CSRF helper,
a signed-in admin (the `admin_client` fixture in conftest uses it), outbox parsing, a watch on
where blocking work runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from newsletter.core.config import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import LIVE, Part, Series
from newsletter.web.app import create_app

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
ADMIN_PASSWORD = "a calm and long password"
ADMIN_BASE = "https://news.example.org"  # the settings fixture's public URL: Secure cookies hold
LINK_RE = re.compile(r"https?://[^\s\"'<>]+/(confirm|preferences|unsubscribe)/([A-Za-z0-9._-]+)")


def dead_redis() -> redis.Redis:
    """A client of a Redis that isn't there (port 1 refuses at once), for an app's
    `state.redis`. No retries: redis-py's default retries a refused connection three times with
    seconds of backoff, which only makes the test wait; the app sees the same ConnectionError."""
    return redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )


def add_series(
    settings: Settings,
    slug: str,
    title: str,
    parts: int = 3,
    *,
    order: int = 1,
    send_day: int = 1,
    send_time: str = "09:00",
    state: str = LIVE,
    published: int = 0,
) -> None:
    """A series with `parts` parts; the first `published` have gone out (first_sent_at set)."""
    now = dt.datetime.now(dt.UTC)
    with session_scope(settings.database_url) as session:
        series = Series(
            slug=slug,
            title=title,
            description=f"About {title.lower()}.",
            send_day=send_day,
            send_time=send_time,
            cadence="weekly",
            order=order,
            state=state,
            content_hash=slug,
            queued_at=now if state == LIVE else None,
        )
        session.add(series)
        session.flush()
        for n in range(1, parts + 1):
            session.add(
                Part(
                    series_id=series.id,
                    number=n,
                    filename=f"{n:02d}-part.md",
                    title=f"{title}: part {n}",
                    summary=f"Summary of part {n}.",
                    body_md=f"Paragraph of part {n} with *emphasis*.\n\n<script>alert(1)</script>\n",
                    content_hash=f"{slug}-{n}",
                    first_sent_at=now - dt.timedelta(days=7) if n <= published else None,
                )
            )


def client(settings: Settings) -> TestClient:
    """A client on https (the CSRF cookie is Secure when the public URL is https)."""
    return TestClient(create_app(settings), base_url="https://testserver")


def csrf_in(page: str, where: str = "the page") -> str:
    """The CSRF token a page's forms carry (the one place the suite reads it)."""
    match = CSRF_RE.search(page)
    assert match, f"no CSRF token on {where}"
    return match.group(1)


def csrf(c: httpx.Client, path: str = "/") -> str:
    """Open a page and return its CSRF token (the cookie is now in the client). Works on a
    TestClient and on an httpx client of a real server alike."""
    response = c.get(path)
    return csrf_in(response.text, f"{path} ({response.status_code})")


def as_admin(settings: Settings, password: str = ADMIN_PASSWORD) -> Settings:
    """These settings with an admin password, so /admin/login accepts `password`."""
    return settings.model_copy(update={"admin_password": SecretStr(password)})


def sign_in(c: httpx.Client, password: str = ADMIN_PASSWORD) -> str:
    """Sign `c` in as the admin; returns the CSRF token its forms carry."""
    token = csrf(c, "/admin/login")
    r = c.post("/admin/login", data={"csrf_token": token, "password": password})
    assert r.status_code == 303, (r.status_code, r.text[:300])
    return token


@dataclass
class Mail:
    path: Path
    subject: str
    to: str
    text: str
    html: str
    headers: dict[str, str]

    def link(self, purpose: str) -> str:
        """The path (e.g. /confirm/<token>) of the first link for this purpose."""
        for m in LINK_RE.finditer(self.text):
            if m.group(1) == purpose:
                return f"/{purpose}/{m.group(2)}"
        raise AssertionError(f"no {purpose} link in {self.subject!r}")


def outbox(settings: Settings) -> list[Mail]:
    """Every .eml in the outbox, oldest first."""
    mails = []
    for path in sorted(Path(settings.outbox_dir).glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text_part = msg.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        html_part = msg.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
        mails.append(
            Mail(
                path=path,
                subject=str(msg["Subject"]),
                to=str(msg["To"]),
                text=text_part.get_content() if text_part else "",
                html=html_part.get_content() if html_part else "",
                headers={k: str(v) for k, v in msg.items()},
            )
        )
    return mails


def admin_app_client(settings: Settings, **options: bool) -> TestClient:
    """A client of a new app on ADMIN_BASE that doesn't follow redirects (not signed in)."""
    return TestClient(create_app(settings), base_url=ADMIN_BASE, follow_redirects=False, **options)


def signed_in(settings: Settings, password: str = ADMIN_PASSWORD) -> tuple[TestClient, str]:
    """A client of a new app signed in as the admin, and the CSRF token its forms carry
    (`settings` must carry `password`: see `as_admin`)."""
    c = admin_app_client(settings)
    return c, sign_in(c, password)


def loop_watch(real: Any, on_loop: list[bool]) -> Any:
    """`real`, appending to `on_loop` whether each call ran where an event loop runs: blocking
    work (rendering, a provider's call, password hashing) must run in a worker thread."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(*args, **kwargs)

    return call
