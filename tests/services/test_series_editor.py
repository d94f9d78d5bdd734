"""The series editor's service: writing schedules/ atomically under a lock, stale and sent-part
refusals, validation tied to form fields, and the byte-for-byte round trip file -> form -> file."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.content import series as content
from newsletter.content.writing import PartText, SeriesText
from newsletter.core.config import Settings
from newsletter.services import series_editor, series_files
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import DRAFT, SENT, Delivery, Part, Series, Subscriber

NOW = dt.datetime(2026, 12, 1, 18, 0, tzinfo=dt.UTC)

ANXIETY = SeriesText(
    slug="anxiety-at-work",
    title="Anxiety at Work",
    description="Three short pieces on worry at work:\nwhat it is, and what helps.",
    send_day=1,
    send_time="08:30",
    cadence="weekly",
    parts=[
        PartText(
            title="When work keeps you up at night",
            summary="Worry about work is common; here is what it is doing.",
            body="Many people lie awake going over the day.\n\n## What is going on\n\nA body on alert.",
        ),
        PartText(
            title="Myth: you should just relax",
            summary="Why 'just relax' rarely works, and what does.",
            body="Telling yourself to relax is a bit like telling yourself to sleep.",
        ),
        PartText(
            title="Talking to your manager",
            summary="A few sentences that make the conversation easier.",
            body="- Pick a calm moment\n- Say what would help\n",
        ),
    ],
)

SERIES_YAML = """\
slug: anxiety-at-work
title: Anxiety at Work
description: |-
  Three short pieces on worry at work:
  what it is, and what helps.
send_day: tuesday
send_time: "08:30"
cadence: weekly
parts:
  - 01-when-work-keeps-you-up-at-night.md
  - 02-myth-you-should-just-relax.md
  - 03-talking-to-your-manager.md
"""

PART_2 = """\
---
title: 'Myth: you should just relax'
summary: Why 'just relax' rarely works, and what does.
---
Telling yourself to relax is a bit like telling yourself to sleep.
"""


@pytest.fixture
def editing(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose schedules/ is this test's own copy of the shipped series."""
    folder = tmp_path / "schedules"
    shutil.copytree(settings.schedules_dir, folder)
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(folder))
    with session_scope(settings.database_url) as db:
        series_store.sync(db, content.load_all(folder))
    return settings.model_copy(update={"schedules_dir": folder})


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_a_new_series_is_written_in_the_documented_format_and_synced(editing: Settings) -> None:
    before = _files(editing.schedules_dir)
    saved = series_editor.save(editing, None, ANXIETY, series_editor.NEW_TOKEN, NOW)

    folder = editing.schedules_dir / "anxiety-at-work"
    assert (folder / "series.yaml").read_text() == SERIES_YAML
    assert (folder / "02-myth-you-should-just-relax.md").read_text() == PART_2
    assert saved.written[-1] == "anxiety-at-work/series.yaml"  # listed files exist first
    assert sorted(saved.written) == sorted(f"anxiety-at-work/{n}" for n in os.listdir(folder))
    after = _files(editing.schedules_dir)
    assert {k: v for k, v in after.items() if not k.startswith("anxiety-at-work/")} == before
    assert not [p for p in editing.schedules_dir.iterdir() if p.name.startswith(".")]

    spec = content.load_series(folder)  # the same validator as `series validate` accepts it
    assert [p.title for p in spec.parts] == [p.title for p in ANXIETY.parts]
    assert spec.parts[2].body_md == "- Pick a calm moment\n- Say what would help\n"
    assert spec.description == ANXIETY.description
    with session_scope(editing.database_url) as db:
        row = db.scalar(select(Series).where(Series.slug == "anxiety-at-work"))
        assert row is not None and row.state == DRAFT and row.send_time == "08:30"
        parts = db.scalars(select(Part).where(Part.series_id == row.id).order_by(Part.number))
        assert [p.title for p in parts] == [p.title for p in ANXIETY.parts]
    assert "1 new series" in saved.summary


@pytest.mark.parametrize("slug", ["myths-about-psychotherapy", "co-created-process"])
def test_opening_and_saving_unchanged_keeps_every_byte(editing: Settings, slug: str) -> None:
    """Hand-written files (folded descriptions, quoted titles) survive file -> form -> file."""
    before = _files(editing.schedules_dir)
    opened = series_editor.open_series(editing, slug)
    assert opened is not None
    saved = series_editor.save(editing, slug, opened.text, opened.token, NOW)
    assert saved.written == [] and saved.removed == []
    assert _files(editing.schedules_dir) == before


def test_editor_written_files_round_trip_byte_for_byte(editing: Settings) -> None:
    from newsletter.content import writing

    series_editor.save(editing, None, ANXIETY, series_editor.NEW_TOKEN, NOW)
    folder = editing.schedules_dir / "anxiety-at-work"
    before = _files(folder)
    text = series_editor.as_text(content.load_series(folder))
    assert writing.series_yaml(text).encode() == before["series.yaml"]
    for part in text.parts:
        assert writing.part_markdown(part).encode() == before[part.filename]


def test_an_edit_writes_only_the_file_that_changed(editing: Settings) -> None:
    opened = series_editor.open_series(editing, "co-created-process")
    assert opened is not None
    before = _files(editing.schedules_dir)
    second = opened.text.parts[1]
    edited = replace(
        opened.text,
        parts=[opened.text.parts[0], replace(second, body=second.body + "\nOne more line.\n")],
    )
    saved = series_editor.save(editing, "co-created-process", edited, opened.token, NOW)
    assert saved.written == ["co-created-process/02-your-part-in-the-work.md"]
    after = _files(editing.schedules_dir)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"co-created-process/02-your-part-in-the-work.md"}
    assert after["co-created-process/02-your-part-in-the-work.md"].endswith(b"\nOne more line.\n")
    assert "1 parts changed" in saved.summary


def test_a_file_changed_on_disk_since_opening_is_not_overwritten(editing: Settings) -> None:
    opened = series_editor.open_series(editing, "co-created-process")
    assert opened is not None
    by_hand = editing.schedules_dir / "co-created-process" / "01-what-co-created-means.md"
    by_hand.write_text(by_hand.read_text() + "\nAdded by hand.\n")
    hand_bytes = _files(editing.schedules_dir)

    changed = replace(opened.text, title="A New Title")
    with pytest.raises(series_editor.EditorError) as refused:
        series_editor.save(editing, "co-created-process", changed, opened.token, NOW)
    assert "changed since you opened this page" in refused.value.problems[0].message
    assert refused.value.problems[0].field == ""
    assert _files(editing.schedules_dir) == hand_bytes


def test_two_tabs_the_second_save_is_refused(editing: Settings) -> None:
    first = series_editor.open_series(editing, "co-created-process")
    second = series_editor.open_series(editing, "co-created-process")
    assert first is not None and second is not None
    series_editor.save(
        editing, "co-created-process", replace(first.text, title="Tab one"), first.token, NOW
    )
    with pytest.raises(series_editor.EditorError):
        series_editor.save(
            editing, "co-created-process", replace(second.text, title="Tab two"), second.token, NOW
        )
    assert (
        "title: Tab one" in (editing.schedules_dir / "co-created-process/series.yaml").read_text()
    )


def test_a_save_waits_for_the_series_lock(editing: Settings) -> None:
    """While one save holds the series' lock another can't write (flock, across processes)."""
    done: list[series_editor.Saved] = []
    with series_editor.series_lock(editing, ANXIETY.slug):
        worker = threading.Thread(
            target=lambda: done.append(
                series_editor.save(editing, None, ANXIETY, series_editor.NEW_TOKEN, NOW)
            )
        )
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and not done
        assert not (editing.schedules_dir / "anxiety-at-work").exists()
    worker.join(timeout=60)
    assert done and (editing.schedules_dir / "anxiety-at-work/series.yaml").is_file()


def test_a_failed_rename_leaves_a_series_that_still_loads(
    editing: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts are renamed into place before series.yaml: a crash between leaves the old listing."""
    opened = series_editor.open_series(editing, "co-created-process")
    assert opened is not None
    yaml_before = (editing.schedules_dir / "co-created-process/series.yaml").read_bytes()
    grown = replace(
        opened.text,
        title="Co-created, revised",
        parts=[*opened.text.parts, PartText("Part three", "The third.", "Body three.")],
    )
    real_replace = os.replace

    def failing(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if str(dst).endswith("series.yaml"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(series_files.os, "replace", failing)
    with pytest.raises(OSError):
        series_editor.save(editing, "co-created-process", grown, opened.token, NOW)
    assert (editing.schedules_dir / "co-created-process/series.yaml").read_bytes() == yaml_before
    assert len(content.load_series(editing.schedules_dir / "co-created-process").parts) == 2
    assert not [p for p in editing.schedules_dir.iterdir() if p.name.startswith(".")]


def test_a_save_clears_staging_folders_a_crash_left(editing: Settings) -> None:
    root = editing.schedules_dir
    old, fresh = root / ".editor-crashed", root / ".editor-in-progress"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "series.yaml").write_text("slug: half-written\n")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    series_editor.save(editing, None, ANXIETY, series_editor.NEW_TOKEN, NOW)
    assert not old.exists() and fresh.is_dir()  # another save's folder is left alone
    assert sorted(p.name for p in root.glob(".editor-*")) == [fresh.name]


def test_problems_are_tied_to_fields_in_the_writers_words(editing: Settings) -> None:
    bad = replace(
        ANXIETY,
        title="  ",
        parts=[
            ANXIETY.parts[0],
            replace(ANXIETY.parts[1], summary=""),
            replace(ANXIETY.parts[2], body="\n\n"),
        ],
    )
    with pytest.raises(series_editor.EditorError) as refused:
        series_editor.save(editing, None, replace(bad, slug="anxiety"), "new", NOW)
    problems = {p.field: p.message for p in refused.value.problems}
    assert problems == {
        "title": "Give the series a title: readers see it above every part.",
        "part-2-summary": (
            "Write an inbox preview line: the sentence most inboxes show after the subject."
        ),
        "part-3-body": "Write the article: this part has no text yet.",
    }
    assert not (editing.schedules_dir / "anxiety").exists()
    assert not [p for p in editing.schedules_dir.iterdir() if p.name.startswith(".")]


def test_a_bad_or_taken_short_name_is_refused(editing: Settings) -> None:
    with pytest.raises(series_editor.EditorError) as bad:
        series_editor.save(editing, None, replace(ANXIETY, slug="Anxiety!"), "new", NOW)
    assert [(p.field, p.message) for p in bad.value.problems] == [
        ("slug", "Use lower-case letters, digits and single hyphens, like anxiety-at-work.")
    ]
    with pytest.raises(series_editor.EditorError) as taken:
        series_editor.save(editing, None, replace(ANXIETY, slug="co-created-process"), "new", NOW)
    assert taken.value.problems[0].field == "slug"
    assert "already a series called 'co-created-process'" in taken.value.problems[0].message


def _send_part_one(settings: Settings, slug: str, readers: int) -> None:
    with session_scope(settings.database_url) as db:
        series = db.scalar(select(Series).where(Series.slug == slug))
        assert series is not None
        part = db.scalar(select(Part).where(Part.series_id == series.id, Part.number == 1))
        assert part is not None
        part.first_sent_at = NOW - dt.timedelta(days=7)
        for n in range(readers):
            sub = Subscriber(
                public_id=f"reader-{n}",
                timezone="UTC",
                email=f"reader{n}@example.org",
                email_key=f"reader{n}@example.org",
            )
            db.add(sub)
            db.flush()
            db.add(
                Delivery(
                    subscriber_id=sub.id,
                    series_id=series.id,
                    part_number=1,
                    status=SENT,
                    scheduled_for=NOW - dt.timedelta(days=7),
                    sent_at=NOW - dt.timedelta(days=7),
                )
            )


def test_parts_that_have_gone_out_are_locked_with_the_reason(editing: Settings) -> None:
    series_editor.save(editing, None, ANXIETY, series_editor.NEW_TOKEN, NOW)
    _send_part_one(editing, "anxiety-at-work", 12)
    opened = series_editor.open_series(editing, "anxiety-at-work")
    assert opened is not None
    lock = opened.sent["01-when-work-keeps-you-up-at-night.md"]
    assert lock.reason.startswith("Sent to 12 readers since Tue 24 Nov 2026")

    one, two, three = opened.text.parts
    attempts = {
        "changed": [replace(one, summary="Something else."), two, three],
        "moved": [two, one, three],
        "removed": [two, three],
    }
    for what, parts in attempts.items():
        with pytest.raises(series_editor.EditorError) as refused:
            series_editor.save(
                editing, "anxiety-at-work", replace(opened.text, parts=parts), opened.token, NOW
            )
        problem = refused.value.problems[0]
        assert problem.message.startswith(f"Part 1 was {what}") and "12 readers" in problem.message
        assert problem.field.startswith("part-")

    # Unsent parts can still be edited and reordered.
    reordered = replace(opened.text, parts=[one, three, replace(two, title="Just relax?")])
    saved = series_editor.save(editing, "anxiety-at-work", reordered, opened.token, NOW)
    assert saved.written == [
        "anxiety-at-work/02-myth-you-should-just-relax.md",
        "anxiety-at-work/series.yaml",
    ]
    spec = content.load_series(editing.schedules_dir / "anxiety-at-work")
    assert [p.title for p in spec.parts] == [one.title, three.title, "Just relax?"]


def test_removing_an_unsent_part_deletes_its_file(editing: Settings) -> None:
    series_editor.save(editing, None, ANXIETY, series_editor.NEW_TOKEN, NOW)
    opened = series_editor.open_series(editing, "anxiety-at-work")
    assert opened is not None
    shorter = replace(opened.text, parts=opened.text.parts[:2])
    saved = series_editor.save(editing, "anxiety-at-work", shorter, opened.token, NOW)
    assert saved.removed == ["03-talking-to-your-manager.md"]
    assert not (editing.schedules_dir / "anxiety-at-work/03-talking-to-your-manager.md").exists()
    assert "1 unsent parts removed" in saved.summary
