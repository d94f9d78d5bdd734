"""services.corrections: a sent part's text fixed in its file and the database; the archive and
later sends carry it; readers who had it get one correction each only when she asks."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from engine_support import add_person, enrollments, outbox_mails, ship, utc
from sqlalchemy import select

from newsletter.content import series as content
from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.services import corrections
from newsletter.store import archive
from newsletter.store.db import session_scope
from newsletter.store.ledger import extras
from newsletter.store.models import ENROLLED_ACTIVE, ExtraSend, Part, Subscriber

NOW = utc(2026, 3, 2, 12)  # a Monday
MYTHS = "myths-about-psychotherapy"
FIX = "The corrected paragraph, typo fixed."


@pytest.fixture
def editing(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose schedules/ is this test's own copy of the shipped series."""
    folder = tmp_path / "schedules"
    shutil.copytree(settings.schedules_dir, folder)
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(folder))
    return settings.model_copy(update={"schedules_dir": str(folder)})


def _due(settings: Settings, sub_id: int) -> dt.datetime:
    [due] = [e.next_due_at for e in enrollments(settings, sub_id) if e.state == ENROLLED_ACTIVE]
    assert due is not None
    return due


def _sent_part_one(settings: Settings) -> tuple[int, int, dt.datetime]:
    """Two readers: the first got part 1; the second joined later and has not."""
    ship(settings, NOW)
    first = add_person(settings, NOW)
    at = _due(settings, first)
    tick(settings, at)
    second = add_person(settings, at + dt.timedelta(hours=1))
    return first, second, at + dt.timedelta(hours=2)


def _correct(
    settings: Settings,
    *,
    send: bool,
    key: str,
    at: dt.datetime,
    form: corrections.CorrectionForm | None = None,
) -> corrections.Corrected:
    """Post the correction form (`form`: as it was drawn; opened afresh when None)."""
    form = form or corrections.open_part(settings, MYTHS, 1)
    assert form is not None
    return corrections.correct(
        settings, MYTHS, 1, title=form.title, summary=form.summary, body=f"{form.body}\n\n{FIX}",
        token=form.token, send=send, key=key, now=at,
    )  # fmt: skip


def test_a_correction_reaches_the_file_the_archive_and_later_sends_but_no_one_else(
    editing: Settings,
) -> None:
    _first, second, at = _sent_part_one(editing)
    mails = len(outbox_mails(editing))
    done = _correct(editing, send=False, key="k1", at=at)
    assert done.changed and done.sent == 0
    assert len(outbox_mails(editing)) == mails  # nobody who had it is mailed
    spec = content.load_series(Path(editing.schedules_dir) / MYTHS)
    assert FIX in spec.parts[0].body_md  # the file holds it: a reload keeps it
    with session_scope(editing.database_url) as session:
        found = archive.published_part(session, MYTHS, 1)
        assert found is not None and FIX in found.body_md and found.corrected == at
    tick(editing, _due(editing, second))  # the later reader's part 1
    with session_scope(editing.database_url) as session:
        person = session.get(Subscriber, second)
        assert person is not None
        address = person.email
    [newest] = [m for m in outbox_mails(editing) if address in str(m["to"])]
    assert FIX in newest.get_body(("plain",)).get_content()
    assert not str(newest["subject"]).startswith("Corrected")


def test_send_the_correction_once_each_even_when_submitted_twice(editing: Settings) -> None:
    first, _second, at = _sent_part_one(editing)
    mails = len(outbox_mails(editing))
    drawn = corrections.open_part(editing, MYTHS, 1)
    done = _correct(editing, send=True, key="k2", at=at, form=drawn)
    assert done.sent == 1
    again = _correct(editing, send=True, key="k2", at=at, form=drawn)  # the form posted again
    assert not again.changed and again.sent == 0 and "already been sent" in again.message
    sent = outbox_mails(editing)[mails:]
    assert [str(m["subject"]).startswith("Corrected: ") for m in sent] == [True]
    assert FIX in sent[0].get_body(("plain",)).get_content()
    with session_scope(editing.database_url) as session:
        rows = session.scalars(select(ExtraSend)).all()
        assert [(r.kind, r.subscriber_id, r.status) for r in rows] == [
            (extras.CORRECTION, first, "sent")
        ]


def test_an_unsent_part_is_not_corrected_here(editing: Settings) -> None:
    ship(editing, NOW)
    assert corrections.open_part(editing, MYTHS, 2) is None
    with pytest.raises(corrections.CorrectionError, match="not gone out"):
        corrections.correct(
            editing, MYTHS, 2, title="x", summary="y", body="z", token="t", send=False,
            key="k", now=NOW,
        )  # fmt: skip


def test_a_stale_form_saves_nothing(editing: Settings) -> None:
    _first, _second, at = _sent_part_one(editing)
    form = corrections.open_part(editing, MYTHS, 1)
    assert form is not None
    with pytest.raises(corrections.CorrectionError):
        corrections.correct(
            editing, MYTHS, 1, title=form.title, summary=form.summary, body="changed",
            token="stale", send=True, key="k", now=at,
        )  # fmt: skip
    with session_scope(editing.database_url) as session:
        part = session.scalar(
            select(Part).where(Part.number == 1, Part.body_md.contains("changed"))
        )
        assert part is None
        assert session.scalars(select(ExtraSend)).all() == []
