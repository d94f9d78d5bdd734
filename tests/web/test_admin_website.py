"""/admin/website: her sites in Settings, the form snippet and iframe, the poster and its QR downloads."""

from __future__ import annotations

import html
import io

import pytest
import segno
import web_helpers
from fastapi.testclient import TestClient

from newsletter.core.config import Settings
from newsletter.services import poster

PASSWORD = "a calm and long password"


@pytest.fixture
def admin(settings: Settings, admin_client: TestClient) -> tuple[Settings, TestClient]:
    return web_helpers.as_admin(settings, PASSWORD), admin_client


def save(c: TestClient, **values: str):  # type: ignore[no-untyped-def]
    token = web_helpers.csrf(c, "/admin/settings")
    return c.post("/admin/settings", data={"csrf_token": token, **values})


def test_her_sites_are_saved_as_origins_and_then_may_post(admin) -> None:
    _settings, c = admin
    assert "Your websites" in c.get("/admin/settings").text
    saved = save(c, signup_origins="https://WWW.Her.example/\r\nhttp://127.0.0.1:8765")
    assert saved.status_code == 303
    page = c.get("/admin/website").text
    assert "<code>https://www.her.example</code>" in page
    assert "<code>http://127.0.0.1:8765</code>" in page
    answer = c.post(
        "/signup", data={"email": "ben@example.org"}, headers={"Origin": "https://www.her.example"}
    )
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("https://www.her.example/contact", "more than the site&#39;s address"),
        ("www.her.example", "not a web address"),
    ],
)
def test_anything_but_an_origin_is_refused_with_the_reason(admin, value, reason) -> None:
    _, c = admin
    refused = save(c, signup_origins=value)
    assert refused.status_code == 422 and reason in refused.text
    assert "Forms work from" not in c.get("/admin/website").text


def test_the_snippet_is_a_plain_form_posting_here_and_the_iframe_our_form(admin) -> None:
    settings, c = admin
    page = c.get("/admin/website").text
    assert "First list your website" in page  # nothing listed yet: she is told to
    snippet = html.unescape(page.split('id="snippet"', 1)[1].split("</textarea>", 1)[0])
    assert f'action="{settings.public_url}/signup"' in snippet
    assert 'method="post"' in snippet and 'name="email"' in snippet
    assert 'name="website"' in snippet and 'tabindex="-1"' in snippet  # the honeypot
    assert "<script" not in snippet and "csrf" not in snippet
    frame = html.unescape(page.split('id="iframe"', 1)[1].split("</textarea>", 1)[0])
    assert f'src="{settings.public_url}/signup/embed"' in frame


def test_the_poster_has_her_words_the_address_and_the_code(admin) -> None:
    _settings, c = admin
    assert save(c, practice_name="Riverside Counselling", poster_line="Gentle reading").is_redirect
    page = c.get("/admin/poster").text
    assert "Riverside Counselling" in page and "Gentle reading" in page
    assert ">news.example.org</p>" in page  # the address in words
    assert poster.svg("https://news.example.org/") in page
    assert 'data-paper="letter"' in page
    assert 'data-paper="a4"' in c.get("/admin/poster?paper=a4").text


def test_the_code_alone_downloads_as_svg_and_png_of_the_signup_address(admin) -> None:
    _settings, c = admin
    expected = segno.make("https://news.example.org/", error="m", micro=False)
    svg = c.get("/admin/poster/qr.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert "attachment" in svg.headers["content-disposition"]
    out = io.BytesIO()
    expected.save(out, kind="svg", border=4, scale=10, xmldecl=True)
    assert svg.content == out.getvalue()
    png = c.get("/admin/poster/qr.png")
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")


def test_the_poster_and_codes_are_for_the_admin_only(settings: Settings) -> None:
    with web_helpers.admin_app_client(settings) as c:
        for path in ("/admin/website", "/admin/poster", "/admin/poster/qr.svg"):
            assert c.get(path).status_code in (303, 401, 403), path


def test_a_control_character_in_her_sites_is_named(admin) -> None:
    _, c = admin
    refused = save(c, signup_origins="https://www.her.example\x00")
    assert refused.status_code == 422 and "U+0000" in refused.text
