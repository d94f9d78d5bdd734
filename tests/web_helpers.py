"""Helpers for the web tests: series rows, a TestClient with a CSRF cookie, a signed-in admin,
outbox parsing."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from newsletter.core.config import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import LIVE, Part, Series
from newsletter.web.app import create_app

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
LINK_RE = re.compile(r"https?://[^\s\"'<>]+/(confirm|preferences|unsubscribe)/([A-Za-z0-9._-]+)")


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


def csrf(c: TestClient, path: str = "/") -> str:
    """Open a page and return its CSRF token (the cookie is now in the client)."""
    response = c.get(path)
    match = CSRF_RE.search(response.text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


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


def signed_in(settings: Settings, password: str) -> tuple[TestClient, str]:
    """A client of a new app signed in as the admin, and the CSRF token its forms carry."""
    c = TestClient(
        create_app(settings), base_url="https://news.example.org", follow_redirects=False
    )
    token = CSRF_RE.search(c.get("/admin/login").text)
    assert token
    r = c.post("/admin/login", data={"csrf_token": token.group(1), "password": password})
    assert r.status_code == 303
    return c, token.group(1)
