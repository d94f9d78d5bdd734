"""Every admin page at phone width (390 px): no sideways scrolling, tap targets at least 44 px."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import load_shipped_series
from paths import free_port
from servers import uvicorn_app

from newsletter.core.config import Settings, load_settings
from newsletter.engine.tick import tick
from newsletter.services import roster
from newsletter.store import calendar
from newsletter.store.db import session_scope
from newsletter.store.models import utcnow

pytestmark = pytest.mark.browser

PASSWORD = "therapist's own long password"
WIDTH = 390
PAGES = [
    "/admin",
    "/admin/calendar",
    "/admin/series",
    "/admin/series/myths-about-psychotherapy/1",
    "/admin/series/new",
    "/admin/series/myths-about-psychotherapy/edit",
    "/admin/subscribers",
    "/admin/subscribers/new",
    "/admin/import",
    "/admin/settings",
    "/admin/outbox",
    "/admin/broadcasts",
]
# Tap targets: buttons, form fields and stand-alone links (links inside a sentence are exempt).
SMALL_TARGETS = """() => [...document.querySelectorAll(
  'main button, main .button, main input:not([type=hidden]):not([type=checkbox]):not([type=radio]),'
  + ' main select, main textarea, nav a, nav button, .send, .outbox-list a, .step-body a')]
  .filter(e => e.offsetParent !== null)
  .filter(e => e.getBoundingClientRect().height < 44)
  .map(e => e.tagName + '.' + e.className + ' ' + (e.textContent || e.name || '').trim().slice(0, 30)
       + ' ' + Math.round(e.getBoundingClientRect().height))"""


@pytest.fixture
def admin_server(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Settings, list[str]]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("NEWSLETTER_PUBLIC_URL", base)
    monkeypatch.setenv("NEWSLETTER_ADMIN_PASSWORD", PASSWORD)
    served = load_settings()
    load_shipped_series(served, published=0)
    ids = [
        roster.add_subscriber(
            served,
            email=f"reader{i}@example.org",
            name=f"A reader with a rather long name {i}",
            timezone=zone,
            confirmed=True,
        )
        for i, zone in enumerate(["Europe/London", "America/Los_Angeles", "Asia/Kolkata"])
    ]
    now = utcnow()
    with session_scope(served.database_url) as session:
        days = calendar.upcoming(session, now, served.default_timezone, 2)
        send = next(s for d in days for s in d.sends)
    tick(served, send.at)  # something in the outbox and in the ledger
    extra = [
        f"/admin/subscribers/{ids[0]}",
        f"/admin/calendar/{send.series_slug}/{send.part_number}?at={send.at:%Y-%m-%dT%H:%M:%SZ}",
    ]
    outbox = sorted(Path(served.outbox_dir).glob("*.eml"))
    if outbox:
        extra.append(f"/admin/outbox/{outbox[-1].name}")
    with uvicorn_app(port, tmp_path / "uvicorn.log", ready_path="/admin/login") as served_base:
        yield served_base, served, extra


def test_every_admin_page_fits_a_phone(browser, admin_server, artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    base, _settings, extra = admin_server
    context = browser.new_context(viewport={"width": WIDTH, "height": 844}, device_scale_factor=1)
    page = context.new_page()
    page.goto(base + "/admin/login")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/admin$"))
    too_wide: dict[str, int] = {}
    small: dict[str, list[str]] = {}
    for path in ["/admin/login", *PAGES, *extra]:
        response = page.goto(base + path)
        assert response is not None and response.status == 200, path
        width = page.evaluate("() => document.documentElement.scrollWidth")
        if width > WIDTH:
            too_wide[path] = width
        targets = page.evaluate(SMALL_TARGETS)
        if targets:
            small[path] = targets
        name = re.sub(r"[^a-z0-9]+", "-", path.split("?")[0].lower()).strip("-")
        name = re.sub(r"outbox-\d{8}t.*", "outbox-email", name)  # one file, not one per run
        page.screenshot(path=str(artifacts / f"phone-{name}.png"), full_page=True)
    context.close()
    assert too_wide == {}, too_wide
    assert small == {}, small
