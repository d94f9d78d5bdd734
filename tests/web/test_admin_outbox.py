"""The outbox viewer: the emails the outbox backend wrote, searchable by address, shown as sent."""

from __future__ import annotations

import re

from engine_support import add_person, ship, utc
from pydantic import SecretStr
from web_helpers import signed_in

from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber

PASSWORD = "a calm and long password"
NOW = utc(2027, 1, 4, 12)


def test_the_outbox_lists_searches_and_shows_each_email_as_sent(settings: Settings) -> None:
    s = settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    ship(s, NOW)
    ids = [add_person(s, NOW, "Europe/London") for _ in range(3)]
    tick(s, utc(2027, 1, 6))
    with session_scope(s.database_url) as session:
        first = session.get(Subscriber, ids[0])
        assert first is not None
        address = first.email
    c, csrf = signed_in(s, PASSWORD)
    listing = c.get("/admin/outbox").text
    assert listing.count('href="/admin/outbox/2') == 3
    assert len(re.findall(r"[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d", listing)) == 3
    found = c.post("/admin/outbox", data={"csrf_token": csrf, "q": address.upper()})
    assert found.status_code == 200
    assert found.text.count('href="/admin/outbox/2') == 1 and address in found.text
    none = c.post("/admin/outbox", data={"csrf_token": csrf, "q": "nobody@example.net"})
    assert 'href="/admin/outbox/2' not in none.text
    assert c.post("/admin/outbox", data={"q": address}).status_code == 400  # CSRF checked

    link = re.search(r'href="(/admin/outbox/[^"]+\.eml)"', found.text)
    assert link
    detail = c.get(link.group(1))
    assert detail.status_code == 200
    assert "Message-ID:" in detail.text and "List-Unsubscribe:" in detail.text
    assert re.search(r"<iframe[^>]*sandbox[^>]*>", detail.text)
    assert "Hi Anna," in detail.text  # the plain text, personalised as sent
    html = c.get(link.group(1) + "/email.html")
    assert html.status_code == 200 and "Common Myths" in html.text
    csp = html.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert csp.split(";")[0] == "sandbox"  # its own origin even when opened on its own tab
    assert c.get("/admin/outbox/..%2F..%2Fsecret_key").status_code == 404
    assert c.get("/admin/outbox/nothing-here.eml").status_code == 404


def test_the_kept_mail_page_is_named_by_how_mail_goes_out(settings: Settings) -> None:
    """In test mode it holds what is not sent yet; once a provider is connected only what test
    mode kept, and the nav and the page stop saying "Not sent yet"."""
    test_mode = settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    c, _ = signed_in(test_mode, PASSWORD)
    nav = re.compile(r'<a href="/admin/outbox"[^>]*>([^<]+)</a>')
    assert nav.findall(c.get("/admin/subscribers").text) == ["Not sent yet"]
    assert "<h1>Not sent yet — test mode</h1>" in c.get("/admin/outbox").text
    connected = test_mode.model_copy(
        update={"mail_backend": "sendgrid", "sendgrid_api_key": SecretStr("SG.kept-mail-test")}
    )
    c, _ = signed_in(connected, PASSWORD)
    assert nav.findall(c.get("/admin/subscribers").text) == ["Kept in test mode"]
    kept = c.get("/admin/outbox").text
    assert "<h1>Kept in test mode</h1>" in kept and "Not sent yet" not in kept
    assert "SendGrid" in kept  # how mail goes out now
