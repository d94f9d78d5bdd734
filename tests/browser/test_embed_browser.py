"""Her website's signup form, for real: the snippet and the iframe on pages of other origins
(second and third local HTTP servers), posting to a real `newsletter web` in Chromium."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import load_shipped_series
from paths import free_port
from servers import uvicorn_app
from sqlalchemy import func, select

from newsletter.core.config import Settings, load_settings
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber
from newsletter.web.admin.website import iframe, snippet

pytestmark = pytest.mark.browser


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site_server(tmp_path: Path) -> Iterator[Callable[[str, str], str]]:
    """Serve pages from a folder on a port of their own: each server is another origin.
    `serve(name, html)` writes the page and returns its URL."""
    servers: list[ThreadingHTTPServer] = []
    roots: dict[str, tuple[Path, str]] = {}

    def origin(label: str) -> tuple[Path, str]:
        if label not in roots:
            root = tmp_path / f"site-{label}"
            root.mkdir()
            handler = functools.partial(Quiet, directory=str(root))
            httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            servers.append(httpd)
            roots[label] = (root, f"http://127.0.0.1:{httpd.server_address[1]}")
        return roots[label]

    def serve(label: str, page: str, body: str = "") -> str:
        root, base = origin(label)
        (root / page).write_text(
            f"<!doctype html><html><head><title>Her practice</title></head>"
            f"<body><h1>Riverside Counselling</h1>{body}</body></html>"
        )
        return f"{base}/{page}"

    serve.origin = lambda label: origin(label)[1]  # type: ignore[attr-defined]
    yield serve
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def newsletter_site(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, site_server: Any
) -> Iterator[tuple[str, Settings]]:
    """`newsletter web` with her website (the "hers" origin) listed in Settings."""
    port = free_port()
    monkeypatch.setenv("NEWSLETTER_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NEWSLETTER_SIGNUP_ORIGINS", site_server.origin("hers"))
    served = load_settings()
    load_shipped_series(served)
    with uvicorn_app(port, tmp_path / "uvicorn.log") as base:
        yield base, served


def until(check: Callable[[], Any]) -> Any:
    """Wait for the web process's after-response work (the email goes out after the page)."""
    deadline = time.monotonic() + 30  # against hanging only
    while not (found := check()):
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)
    return found


def mails(settings: Settings) -> list[Path]:
    return sorted(Path(settings.outbox_dir).glob("*.eml"))


def people(settings: Settings) -> int:
    with session_scope(settings.database_url) as s:
        return int(s.scalar(select(func.count()).select_from(Subscriber)) or 0)


def test_the_snippet_on_her_site_signs_a_reader_up_and_elsewhere_is_refused(
    newsletter_site: tuple[str, Settings], site_server: Any, browser: Any, artifacts: Path
) -> None:
    base, settings = newsletter_site
    form = snippet(base)
    hers = site_server("hers", "contact.html", f"<p>Letters from the practice.</p>{form}")
    page = browser.new_page()

    page.goto(hers)
    page.fill("input[name=email]", "reader@example.org")
    page.fill("input[name=name]", "Robin")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/signup")
    assert "check your email" in page.text_content("h1").lower()  # type: ignore[union-attr]
    back = page.locator("#back")
    assert back.get_attribute("href") == site_server.origin("hers")
    page.screenshot(path=str(artifacts / "embed-check-your-email.png"), full_page=True)
    (mail,) = until(lambda: mails(settings))
    assert "reader@example.org" in mail.read_text()
    back.click()  # back to her site
    page.wait_for_url(site_server.origin("hers") + "/")

    # A filled honeypot (a bot fills every box): the same page, and nothing happens.
    page.goto(hers)
    page.fill("input[name=email]", "bot@example.org")
    page.evaluate("document.querySelector('input[name=website]').value = 'http://spam.example'")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/signup")
    assert "check your email" in page.text_content("h1").lower()  # type: ignore[union-attr]

    # The same form on a site she hasn't listed: refused, nobody signed up.
    elsewhere = site_server("other", "copy.html", form)
    page.goto(elsewhere)
    page.fill("input[name=email]", "victim@example.org")
    with page.expect_response(f"{base}/signup") as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 403
    assert "that website" in (page.text_content("main") or "")
    assert people(settings) == 1 and len(mails(settings)) == 1  # the honeypot did nothing
    page.close()


def test_the_iframe_renders_on_her_site_and_is_refused_elsewhere(
    newsletter_site: tuple[str, Settings], site_server: Any, browser: Any, artifacts: Path
) -> None:
    base, settings = newsletter_site
    tag = iframe(base, settings.practice)
    page = browser.new_page()

    page.goto(site_server("hers", "frame.html", tag))
    frame = page.frame_locator("iframe")
    frame.locator("input[name=email]").fill("framed@example.org")
    page.screenshot(path=str(artifacts / "embed-iframe.png"), full_page=True)
    frame.locator("button[type=submit]").click()
    frame.locator("#back").wait_for()  # the check-your-email page, inside her page
    assert "check your email" in (frame.locator("h1").text_content() or "").lower()
    assert frame.locator("#back").get_attribute("href") == site_server.origin("hers")
    (mail,) = until(lambda: mails(settings))
    assert "framed@example.org" in mail.read_text()

    # On a site she hasn't listed the browser refuses to show it (frame-ancestors).
    page.goto(site_server("other", "frame.html", tag))
    (child,) = page.main_frame.child_frames
    assert child.query_selector("input[name=email]") is None
    assert people(settings) == 1
    page.close()
