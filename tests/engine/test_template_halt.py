"""Invariant 9 for the email templates: a template the practice broke never costs a reader a part.

A Jinja syntax error or an undefined name in templates/email/ (the therapist may edit them):
the next tick halts sending with the template's file and line (dashboard, doctor, alert), fails
no row and moves no reader; once the file is saved again the halt lifts by itself and each
reader gets the part exactly once. The dashboard's button lifts it too.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import redis
import web_helpers
from engine_support import add_person, enrollments, ledger, outbox_mails, own_templates, ship, utc
from pydantic import SecretStr

from newsletter.core.config import Settings
from newsletter.core.vocabulary import HALT_TEMPLATE
from newsletter.engine.tick import tick
from newsletter.services import alerts, doctor
from newsletter.store.db import session_scope
from newsletter.store.halt import Halt, halted
from newsletter.store.models import FAILED, RETRY, SENT

MONDAY = utc(2027, 3, 1, 12)
TUESDAY_9 = utc(2027, 3, 2, 9)  # the Myths series' first slot, in UTC and London alike
HOUR = dt.timedelta(hours=1)
PASSWORD = "a calm and long password"
# a mistake the therapist might make in article.html (line 4 holds the title) -> its message
BREAKS = {
    "syntax": ("{{ part_title_html }}", "{{ part_title_html }", "template syntax error"),
    "undefined": (
        "{{ part_title_html }}",
        "{{ part_titel_html }}",
        "'part_titel_html' is undefined",
    ),
    "type": ("{{ part_title_html }}", "{{ part_title_html - 1 }}", "unsupported operand"),
}


@pytest.fixture
def own(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings with a templates folder of its own."""
    return own_templates(settings, tmp_path / "templates", monkeypatch)


def _article(own: Settings) -> Path:
    return Path(own.templates_dir) / "email" / "article.html"


def _break(own: Settings, how: str) -> str:
    """Break article.html's line 4; the good text, to restore."""
    good_bit, bad_bit, _ = BREAKS[how]
    good = _article(own).read_text()
    assert good.splitlines()[3].count(good_bit) == 1
    _article(own).write_text(good.replace(good_bit, bad_bit))
    return good


def _readers(own: Settings) -> list[int]:
    ship(own, MONDAY)
    return [add_person(own, MONDAY, zone) for zone in ("UTC", "Europe/London", "UTC")]


def _all_at_part(own: Settings, readers: list[int], part: int) -> bool:
    return all(enrollments(own, sid)[0].next_part == part for sid in readers)


def _current_halt(own: Settings) -> Halt | None:
    with session_scope(own.database_url) as db:
        return halted(db, own)


def _nothing_lost(own: Settings, readers: list[int]) -> None:
    """No row failed, nothing sent, every reader still at part 1 and due then."""
    assert [row for row in ledger(own) if row[3] == FAILED] == []
    assert {row[3] for row in ledger(own)} == {RETRY}
    assert outbox_mails(own) == []
    assert _all_at_part(own, readers, 1)


def _sent_part_1_once(own: Settings, readers: list[int]) -> None:
    mails = outbox_mails(own)
    assert len(mails) == len(readers) and len({str(m["To"]) for m in mails}) == len(readers)
    assert sorted((r[0], r[2], r[3]) for r in ledger(own)) == sorted(
        (sid, 1, SENT) for sid in readers
    )
    assert _all_at_part(own, readers, 2)


@pytest.mark.parametrize("how", BREAKS)
def test_a_broken_template_halts_and_the_part_goes_out_once_after_the_fix(
    own: Settings, how: str
) -> None:
    readers = _readers(own)
    good = _break(own, how)

    summary = tick(own, TUESDAY_9)
    assert (summary.sent, summary.failed, summary.retry) == (0, 0, len(readers))
    _nothing_lost(own, readers)
    halt = _current_halt(own)
    assert halt is not None and halt.kind == HALT_TEMPLATE
    assert f"{_article(own)}:4: " in halt.reason and BREAKS[how][2] in halt.reason
    assert "@" not in halt.reason  # the file and line, never a reader's address

    later = tick(own, TUESDAY_9 + 2 * HOUR)  # still broken: still nothing, nobody moved
    assert (later.sent, later.failed) == (0, 0)
    _nothing_lost(own, readers)

    _article(own).write_text(good)  # the fix
    assert _current_halt(own) is None  # lifted by itself: the template files changed
    after = tick(own, TUESDAY_9 + 3 * HOUR)
    assert (after.sent, after.failed) == (len(readers), 0)
    assert tick(own, TUESDAY_9 + 4 * HOUR).sent == 0  # once, not again
    _sent_part_1_once(own, readers)


def test_the_halt_is_on_the_dashboard_in_doctor_and_in_the_alerts(own: Settings) -> None:
    _readers(own)
    _break(own, "undefined")
    tick(own, TUESDAY_9)
    where = f"{_article(own)}:4: undefined variable"

    admin = own.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    c, _ = web_helpers.signed_in(admin, PASSWORD)
    with c:
        page = c.get("/admin").text
    assert "Sending is stopped" in page and where in page
    assert "email templates" in page and "starts again by itself" in page

    (finding,) = doctor.run(doctor.Context(own), ["sending"]).findings
    assert finding.level == "error" and where in finding.message
    assert "correct the email template" in finding.message

    alerting = own.model_copy(update={"admin_email": "therapist@calm.example.org"})
    client = redis.Redis.from_url(str(own.redis_url))
    (problem,) = [p for p in alerts.status(alerting, client).problems if p.key == "halted"]
    assert where in problem.detail and "template" in problem.detail
    assert "refused the credentials" not in problem.detail
    assert "halted" in alerts.watch(alerting, client)
    (alert,) = [m for m in outbox_mails(own) if str(m["To"]) == "therapist@calm.example.org"]
    assert where in alert.get_body(("plain",)).get_content()


def test_the_dashboard_button_lifts_it_and_a_still_broken_template_halts_again(
    own: Settings,
) -> None:
    readers = _readers(own)
    good = _break(own, "syntax")
    tick(own, TUESDAY_9)
    assert _current_halt(own) is not None

    admin = own.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    c, token = web_helpers.signed_in(admin, PASSWORD)
    with c:
        r = c.post("/admin/sending/resume", data={"csrf_token": token})
    assert r.status_code == 303 and _current_halt(own) is None

    again = tick(own, TUESDAY_9 + HOUR)  # the template is still broken: halted again, no loss
    assert (again.sent, again.failed) == (0, 0)
    assert _current_halt(own) is not None
    _nothing_lost(own, readers)

    _article(own).write_text(good)
    assert tick(own, TUESDAY_9 + 2 * HOUR).sent == len(readers)
    _sent_part_1_once(own, readers)
