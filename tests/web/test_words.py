"""Her words: signed in as the owner, every admin page's visible text is free of the server's
words (web/words.py BANNED); only "About this server" may name them."""

from __future__ import annotations

import datetime as dt
import html
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from engine_support import add_person, ship
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from time_machine import TimeMachineFixture
from web_helpers import admin_app_client, as_admin, csrf, sign_in

from newsletter.core.config import Settings
from newsletter.core.vocabulary import HALT_TEMPLATE
from newsletter.services import broadcasts
from newsletter.store.db import session_scope
from newsletter.store.halt import halt
from newsletter.web import words

MONDAY = dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC)
HREF_RE = re.compile(r'href="(/admin[^"#]*)"')
# Admin GET routes that are not pages of hers, each with the reason.
NOT_PAGES = {
    "/admin/login": "signed out (acct24's page)",
    "/admin/export.csv": "a download",
    "/admin/export.json": "a download",
    "/admin/subscribers/{subscriber_id}/export.json": "a download",
    "/admin/import/{upload_id}/status": "JSON polled by the import page",
    "/admin/import/{upload_id}/progress": "needs a running background import; same template "
    "as /admin/import, which is scanned",
    "/admin/series/{slug}/{number}/email.html": "the email itself (the reader's words)",
    "/admin/outbox/{name}/email.html": "the email itself (the reader's words)",
    words.ABOUT_PATH: "the one page for the technical facts",
}
SKIPPED_TAGS = {"script", "style", "textarea", "iframe", "template"}


# The disclosure that keeps the server's words for whoever runs it (_macros.html
# for_the_server): only its summary is her text.
FOR_THE_SERVER = "data-for-the-server"


class _Visible(HTMLParser):
    """The text a person sees: text nodes outside script/style/textarea, plus button values;
    inside a for-the-server disclosure, only its summary."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.parts: list[str] = []
        self.server_depth = 0  # nested <details> since a for-the-server one opened
        self.in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "details" and (self.server_depth or FOR_THE_SERVER in values):
            self.server_depth += 1
        if tag == "summary" and self.server_depth == 1:
            self.in_summary = True
        if tag in SKIPPED_TAGS:
            self.depth += 1
        if tag == "input" and values.get("type") in {"submit", "button"}:
            self.parts.append(values.get("value") or "")
        if values.get("placeholder"):
            self.parts.append(values["placeholder"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_TAGS and self.depth:
            self.depth -= 1
        if tag == "summary":
            self.in_summary = False
        if tag == "details" and self.server_depth:
            self.server_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self.depth and (not self.server_depth or self.in_summary):
            self.parts.append(data)


def visible_text(page: str) -> str:
    parser = _Visible()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


def _seed(settings: Settings, c: TestClient) -> None:
    """A live series, readers, a broadcast and an email written in test mode, so every
    detail page has something to show."""
    ship(settings, MONDAY)
    add_person(settings, MONDAY, "Europe/London")
    add_person(settings, MONDAY, "America/Denver", slugs=[])
    token = csrf(c, "/admin/broadcasts")
    c.post(
        "/admin/broadcasts",
        data={
            "csrf_token": token,
            "title": "Closed on Friday",
            "summary": "Back Monday.",
            "body_md": "We are *closed*.",
            "action": "confirm",
            "audience": "all",
            "when": "date",
            "on_date": "2027-03-05",
        },
    )
    assert broadcasts.list_all(settings), "the broadcast was not scheduled"
    sent = c.post(
        "/admin/series/myths-about-psychotherapy/1/test",
        data={"csrf_token": token, "to": "me@example.org"},
    )
    assert sent.status_code == 303


def _crawl(c: TestClient) -> dict[str, str]:
    """Every admin page reachable by a link from the dashboard: path -> visible text."""
    seen: dict[str, str] = {}
    todo = ["/admin"]
    while todo:
        path = todo.pop()
        if path in seen or any(_matches(path, route) for route in NOT_PAGES):
            continue
        response = c.get(path)
        assert response.status_code == 200, (path, response.status_code)
        seen[path] = visible_text(response.text)
        todo.extend(html.unescape(h) for h in HREF_RE.findall(response.text))
    return seen


def _matches(path: str, route: str) -> bool:
    pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(route))
    return re.fullmatch(pattern, path.split("?")[0]) is not None


@pytest.fixture
def owner(settings: Settings, time_machine: TimeMachineFixture) -> Iterator[TestClient]:
    """Signed in as the owner on a fixed Monday."""
    time_machine.move_to(MONDAY, tick=False)
    with admin_app_client(as_admin(settings)) as c:
        sign_in(c)
        yield c


def test_no_server_words_on_her_pages(owner: TestClient, settings: Settings) -> None:
    admin_client = owner
    _seed(settings, admin_client)
    pages = _crawl(admin_client)
    routes = [
        r.path
        for r in admin_client.app.routes  # type: ignore[attr-defined]
        if isinstance(r, APIRoute) and "GET" in r.methods and r.path.startswith("/admin")
    ]
    unvisited = [r for r in routes if r not in NOT_PAGES and not any(_matches(p, r) for p in pages)]
    assert not unvisited, f"admin pages no link reaches (seed them or list them): {unvisited}"
    found = [
        f"{path}: {word!r} in “{said}”"
        for path, text in pages.items()
        for word, said in words.banned_in(text)
    ]
    assert not found, "the server's words on her pages:\n" + "\n".join(found)


def test_about_page_names_the_technical_facts(admin_client: TestClient) -> None:
    page = admin_client.get(words.ABOUT_PATH)
    assert page.status_code == 200
    text = visible_text(page.text)
    assert "NEWSLETTER_MAIL_BACKEND" in text and "schedules/" in text


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("Last tick 40 s ago", "tick"),
        ("1 worker", "worker"),
        ("Outbox", "outbox"),
        ("Reload from schedules/", "schedules/"),
        ("Mail goes out through the outbox backend", "backend"),
        ("set NEWSLETTER_SENDGRID_API_KEY", "NEWSLETTER_*"),
        ("Saved 01-intro.md", "*.md"),
        ("wrote series.yaml", "series.yaml"),
        ("templates/email/article.html line 3", "*.html"),
    ],
)
def test_banned_words_are_found(text: str, word: str) -> None:
    assert word in [w for w, _ in words.banned_in(text)]


def test_an_unconnected_provider_is_named_in_her_words() -> None:
    said = words.test_failed("unconfigured", "NEWSLETTER_SENDGRID_API_KEY is not set")
    assert words.banned_in(said) == [] and "isn't connected" in said
    assert words.test_failed("invalid", "not an address") == "Test not sent: not an address."


def test_her_words_pass() -> None:
    assert words.banned_in("Sending: checked 40 s ago · none ticked: all · Not sent yet") == []
    assert words.mail_way("outbox") == "Not sent yet — test mode"


def test_banners_keep_file_names_for_whoever_runs_the_server(
    settings: Settings, tmp_path: Path, time_machine: TimeMachineFixture
) -> None:
    """The halt banner, the editor's "can't open" page and a refused reload: her words, with
    the file names behind "Details for whoever runs the server"."""
    time_machine.move_to(MONDAY, tick=False)
    folder = tmp_path / "schedules"
    shutil.copytree(settings.schedules_dir, folder)
    yaml_file = folder / "co-created-process" / "series.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("send_time:", "sendtime:"))
    ship(settings, MONDAY)
    with session_scope(settings.database_url) as db:
        halt(db, "templates/email/article.html line 3: unexpected '}'", kind=HALT_TEMPLATE)
    broken = as_admin(settings).model_copy(update={"schedules_dir": folder})
    with admin_app_client(broken) as c:
        token = sign_in(c)
        banners = {
            "/admin": c.get("/admin"),
            "/admin/series/co-created-process/edit": c.get("/admin/series/co-created-process/edit"),
            "POST /admin/series/reload": c.post("/admin/series/reload", data={"csrf_token": token}),
        }
    shown = {path: visible_text(r.text) for path, r in banners.items()}
    assert "Sending is stopped" in shown["/admin"] and "article.html" in banners["/admin"].text
    for path, response in banners.items():
        assert "Details for whoever runs the server" in shown[path], path
        assert FOR_THE_SERVER in response.text, path
    assert "sendtime" in banners["/admin/series/co-created-process/edit"].text
    found = [f"{p}: {w!r} in “{said}”" for p, t in shown.items() for w, said in words.banned_in(t)]
    assert not found, "the server's words in her banners:\n" + "\n".join(found)


def test_only_the_summary_of_a_for_the_server_disclosure_is_her_text() -> None:
    page = (
        "<p>Stopped</p><details data-for-the-server><summary>Details</summary>"
        "<ul><li>series.yaml</li></ul><details><summary>x.md</summary></details></details>"
        "<details><summary>More</summary><p>shown</p></details>"
    )
    assert visible_text(page) == "Stopped Details More shown"
