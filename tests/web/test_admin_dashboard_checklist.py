"""The dashboard's first-run checklist: each step ticks itself from real state."""

from __future__ import annotations

import re

from engine_support import ship, utc
from pydantic import SecretStr
from web_helpers import signed_in

from newsletter.core.config import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import ProviderEvent

PASSWORD = "a calm and long password"
NOW = utc(2027, 1, 4, 12)


def _done(page: str) -> list[str]:
    return re.findall(r'class="step done">.*?class="step-label">([^<]+)<', page, re.S)


def test_each_step_ticks_when_the_thing_is_really_done(settings: Settings) -> None:
    s = settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    ship(s, NOW, queue=False)
    c, csrf = signed_in(s, PASSWORD)
    page = c.get("/admin").text
    assert "Getting started: 0 of 5 done" in page and _done(page) == []
    assert "No series is queued yet" in page

    details = {
        "from_name": "Dr Maya Okafor",
        "from_email": "maya@riverside.example.net",
        "postal_address": "12 Mill Lane, Hebden Bridge",
    }
    assert c.post("/admin/settings", data={"csrf_token": csrf, **details}).status_code == 303
    r = c.post(
        "/admin/series/myths-about-psychotherapy/1/test",
        data={"csrf_token": csrf, "to": "maya@riverside.example.net"},
    )
    assert r.status_code == 303
    r = c.post(
        "/admin/series/myths-about-psychotherapy/queue", data={"csrf_token": csrf, "start": ""}
    )
    assert r.status_code == 303
    page = c.get("/admin").text
    assert _done(page) == [
        "Set your practice details",
        "Send yourself a test",
        "Queue your first series",
    ]
    assert "Getting started: 3 of 5 done" in page
    # queued with nobody in it yet: the lead says so instead of "nothing is queued"
    assert "No series is queued yet" not in page and "Nothing is waiting to go out" in page

    with session_scope(s.database_url) as session:
        session.add(
            ProviderEvent(
                provider="sendgrid",
                event_id="k1",
                event_type="delivered",
                occurred_at=NOW,
            )
        )
    sg = s.model_copy(
        update={"mail_backend": "sendgrid", "sendgrid_api_key": SecretStr("SG.test-key")}
    )
    c2, _ = signed_in(sg, PASSWORD)
    assert "Getting started" not in c2.get("/admin").text  # all done: the list goes away
