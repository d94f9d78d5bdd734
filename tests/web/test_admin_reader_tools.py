"""The reader tools on a person's page and the correction form, through the admin's forms:
each action lands, says what it did, and shows on the person's activity list; a double
submit of "send again" or "send the correction" mails once."""

from __future__ import annotations

import datetime as dt
import html
import re
import shutil
from pathlib import Path

import pytest
import time_machine
from engine_support import add_person, enrollments, ship, utc
from web_helpers import as_admin, csrf_in, loop_watch, outbox, signed_in

from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.store.models import ENROLLED_ACTIVE

NOW = utc(2026, 3, 2, 12)  # a Monday
MYTHS = "myths-about-psychotherapy"
KEY_RE = re.compile(r'name="key" value="([^"]+)"')


@pytest.fixture
def admin(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An admin's settings on this test's own copy of schedules/ (a correction writes it)."""
    folder = tmp_path / "schedules"
    shutil.copytree(settings.schedules_dir, folder)
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(folder))
    return as_admin(settings.model_copy(update={"schedules_dir": str(folder)}))


def _reader_with_two_parts(s: Settings) -> tuple[int, dt.datetime]:
    ship(s, NOW)
    sub = add_person(s, NOW, name="Maya Reader")
    for _ in range(2):
        [due] = [e.next_due_at for e in enrollments(s, sub) if e.state == ENROLLED_ACTIVE]
        assert due is not None
        tick(s, due)
    return sub, due + dt.timedelta(hours=1)


def test_edit_and_send_again_from_the_person_page(admin: Settings) -> None:
    sub, at = _reader_with_two_parts(admin)
    with time_machine.travel(at, tick=False):
        c, _ = signed_in(admin)
        path = f"/admin/subscribers/{sub}"
        page = c.get(path).text
        assert "Change this reader" in page and "Nothing changed by hand yet." in page
        token = csrf_in(page)
        r = c.post(
            f"{path}/edit",
            data={"csrf_token": token, "name": "Maya R", "timezone": "Asia/Tokyo",
                  "cadence": "weekly", "paused_until": ""},
        )  # fmt: skip
        assert r.status_code == 303
        page = c.get(path).text
        assert "time zone Europe/London → Asia/Tokyo" in page  # flash and activity list
        key = KEY_RE.search(page)
        assert key is not None
        mails = {m.path for m in outbox(admin)}
        form = {"csrf_token": csrf_in(page), "part": f"{MYTHS}/2", "key": key.group(1)}
        assert c.post(f"{path}/send-again", data=form).status_code == 303
        assert c.post(f"{path}/send-again", data=form).status_code == 303  # a double click
        sent = [m for m in outbox(admin) if m.path not in mails]
        assert len(sent) == 1 and "Maya R" in sent[0].text
        page = c.get(path).text
        assert "Part sent again" in page and "part 2 of" in page
        r = c.post(f"{path}/skip", data={"csrf_token": csrf_in(page)})
        assert r.status_code == 303
        assert "Part skipped" in c.get(path).text


def test_a_refused_move_says_why(admin: Settings) -> None:
    sub, at = _reader_with_two_parts(admin)
    with time_machine.travel(at, tick=False):
        c, token = signed_in(admin)
        path = f"/admin/subscribers/{sub}"
        data = {"csrf_token": token, "series": MYTHS, "part": "1"}
        r = c.post(f"{path}/move", data=data, follow_redirects=True)
        assert "never goes back" in r.text


def test_correct_a_sent_part_and_the_archive_says_so(admin: Settings) -> None:
    sub, at = _reader_with_two_parts(admin)
    with time_machine.travel(at, tick=False):
        c, _ = signed_in(admin)
        assert "/admin/series/myths-about-psychotherapy/1/correct" in c.get("/admin/series").text
        path = f"/admin/series/{MYTHS}/1/correct"
        page = c.get(path).text
        token = re.search(r'name="token" value="([^"]+)"', page)
        key = KEY_RE.search(page)
        body = re.search(
            r'<textarea id="c-body" name="body" rows="18">(.*?)</textarea>', page, re.S
        )
        title = re.search(r'id="c-title" name="title" maxlength="200" value="([^"]*)"', page)
        summary = re.search(r'id="c-summary" name="summary" maxlength="400" value="([^"]*)"', page)
        assert token and key and body and title and summary

        form = {
            "csrf_token": csrf_in(page), "token": token.group(1), "key": key.group(1),
            "title": html.unescape(title.group(1)), "summary": html.unescape(summary.group(1)),
            "body": html.unescape(body.group(1)) + "\n\nA sentence added by the correction.",
            "send": "yes",
        }  # fmt: skip
        mails = {m.path for m in outbox(admin)}
        r = c.post(path, data=form)
        assert r.status_code == 303, r.text[-2000:]
        assert c.post(path, data=form).status_code == 303  # a double submit
        sent = [m for m in outbox(admin) if m.path not in mails]
        assert len(sent) == 1 and sent[0].subject.startswith("Corrected: ")
        archive = c.get(f"/archive/{MYTHS}/1").text
        assert "A sentence added by the correction." in archive
        assert "Corrected on Tue 10 Mar 2026." in archive  # the practice's date of `at`
        assert "Correction sent" in c.get(f"/admin/subscribers/{sub}").text


def test_every_form_that_mails_calls_the_provider_off_the_event_loop(
    admin: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Send again, a correction to everyone who had the part, a part's and a broadcast's test
    email, a confirmation again: each once ran its provider call (and its rendering) inside
    `async def`, where a correction to 2,000 readers held every page, the public ones too, for
    half a minute. Each mails, and none on the event loop."""
    from newsletter.mail.backends.outbox import OutboxBackend
    from newsletter.services import roster

    on_loop: list[bool] = []
    monkeypatch.setattr(OutboxBackend, "send", loop_watch(OutboxBackend.send, on_loop))
    sub, at = _reader_with_two_parts(admin)
    with time_machine.travel(at, tick=False):
        c, _ = signed_in(admin)
        pending = roster.add_subscriber(admin, email="pending.reader@example.org")
        on_loop.clear()  # the ticks and the signup's confirmation ran outside the app
        mails = len(outbox(admin))
        page = c.get(f"/admin/subscribers/{sub}").text
        key = KEY_RE.search(page)
        assert key is not None
        again = {"csrf_token": csrf_in(page), "part": f"{MYTHS}/1", "key": key.group(1)}
        assert c.post(f"/admin/subscribers/{sub}/send-again", data=again).status_code == 303
        page = c.get(f"/admin/series/{MYTHS}/1/correct").text
        form = {
            "csrf_token": csrf_in(page),
            "token": re.search(r'name="token" value="([^"]+)"', page).group(1),  # type: ignore[union-attr]
            "key": KEY_RE.search(page).group(1),  # type: ignore[union-attr]
            "title": "A new title", "summary": "A new summary.", "body": "A corrected body.",
            "send": "yes",
        }  # fmt: skip
        assert c.post(f"/admin/series/{MYTHS}/1/correct", data=form).status_code == 303
        token = csrf_in(c.get("/admin/broadcasts").text)
        to = "maya@riverside.example.net"
        assert c.post(f"/admin/series/{MYTHS}/1/test", data={"csrf_token": token, "to": to})
        letter = {"title": "Closed", "summary": "Back Monday.", "body_md": "Closed on Friday."}
        test = {"csrf_token": token, **letter, "action": "test", "test_to": to, "when": "now"}
        assert c.post("/admin/broadcasts", data=test).status_code == 200
        resend = {"csrf_token": token}
        assert c.post(f"/admin/subscribers/{pending}/resend", data=resend).status_code == 303
    assert len(outbox(admin)) == mails + 5
    assert on_loop == [False] * 5
