"""The series editor pages: sign-in and CSRF, saving to schedules/, problems shown at their field,
locked parts, stale files, and the live preview endpoints."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from web_helpers import csrf_in, loop_watch, sign_in

from newsletter.content import series as content
from newsletter.core.config import Settings
from newsletter.services import series_editor
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import Part, Series
from newsletter.web.app import create_app

PASSWORD = "a calm and long password"
BASE = "https://news.example.org"


@pytest.fixture
def editing(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    folder = tmp_path / "schedules"
    shutil.copytree(settings.schedules_dir, folder)
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(folder))
    with session_scope(settings.database_url) as db:
        series_store.sync(db, content.load_all(folder))
    return settings.model_copy(
        update={"schedules_dir": folder, "admin_password": SecretStr(PASSWORD)}
    )


@pytest.fixture
def client(editing: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(editing), base_url=BASE, follow_redirects=False) as c:
        yield c


@pytest.fixture
def signed_in(client: TestClient) -> TestClient:
    sign_in(client, PASSWORD)
    return client


def _form(page: str, **fields: object) -> dict[str, object]:
    values: dict[str, object] = {
        "csrf_token": csrf_in(page),
        "token": re.search(r'name="token" value="([^"]*)"', page).group(1),  # type: ignore[union-attr]
        "title": "Anxiety at Work",
        "slug": "",
        "description": "Three short pieces on worry at work.",
        "send_day": "1",
        "send_time": "08:30",
        "cadence": "weekly",
        "part_filename": ["", "", ""],
        "part_title": ["When work keeps you up", "Myth: just relax", "Talking to your manager"],
        "part_summary": ["Worry at night is common.", "Why it rarely works.", "A few sentences."],
        "part_body": ["Part one text.", "Part two text.", "Part three text."],
    }
    values.update(fields)
    return values


def test_editor_pages_need_sign_in_and_a_csrf_token(client: TestClient, editing: Settings) -> None:
    for path in ("/admin/series/new", "/admin/series/co-created-process/edit"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/admin/login"
    for path in ("/admin/series/new", "/admin/series-editor/preview"):
        assert client.post(path, data={"title": "x"}).status_code == 303

    sign_in(client, PASSWORD)
    page = client.get("/admin/series/new").text
    form = _form(page)
    form["csrf_token"] = "forged"
    assert client.post("/admin/series/new", data=form).status_code == 400
    assert not (editing.schedules_dir / "anxiety-at-work").exists()


def test_new_series_page_and_its_policy(signed_in: TestClient) -> None:
    r = signed_in.get("/admin/series/new")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "frame-src 'self'" in csp and "connect-src 'self'" in csp and "unsafe" not in csp
    for field in ("title", "slug", "description", "send_day", "send_time", "cadence"):
        assert f'name="{field}"' in r.text
    assert r.text.count('name="part_body"') == 2  # the first part, and the template for more
    assert "/static/editor.js" in r.text and 'data-draft-key="newsletter-editor:new"' in r.text
    assert 'id="email-frame"' in r.text and "Phone (390 px)" in r.text and "Dark mode" in r.text


def test_a_new_series_is_saved_to_schedules_and_synced(
    signed_in: TestClient, editing: Settings
) -> None:
    page = signed_in.get("/admin/series/new").text
    r = signed_in.post("/admin/series/new", data=_form(page))
    assert r.status_code == 303, r.text[:2000]
    assert r.headers["location"] == "/admin/series/anxiety-at-work/edit?created=1"
    folder = editing.schedules_dir / "anxiety-at-work"
    assert (
        (folder / "series.yaml")
        .read_text()
        .startswith("slug: anxiety-at-work\ntitle: Anxiety at Work\n")
    )
    assert (folder / "02-myth-just-relax.md").read_text() == (
        "---\ntitle: 'Myth: just relax'\nsummary: Why it rarely works.\n---\nPart two text.\n"
    )
    edit = signed_in.get(r.headers["location"])
    assert "Saved “Anxiety at Work”: " in edit.text
    assert "Myth: just relax" in edit.text
    with session_scope(editing.database_url) as db:
        series = db.scalar(select(Series).where(Series.slug == "anxiety-at-work"))
        assert series is not None and series.send_day == 1
    listing = signed_in.get("/admin/series").text
    assert 'href="/admin/series/new"' in listing
    assert 'href="/admin/series/anxiety-at-work/edit"' in listing


def test_problems_show_at_their_field_and_keep_what_was_typed(
    signed_in: TestClient, editing: Settings
) -> None:
    page = signed_in.get("/admin/series/new").text
    form = _form(
        page,
        part_summary=["Worry at night is common.", "", "A few sentences."],
        part_body=["Part one text.", "Part two text, kept.", "Part three text."],
    )
    r = signed_in.post("/admin/series/new", data=form)
    assert r.status_code == 422
    message = "Write an inbox preview line: the sentence most inboxes show after the subject."
    assert f'<p class="field-error" id="err-part-2-summary" role="alert">{message}</p>' in r.text
    assert re.search(r'id="part-2-summary"[^>]*aria-invalid="true"', r.text)
    assert f'<a href="#part-2-summary">{message}</a>' in r.text
    assert "Part two text, kept." in r.text and "schedules/" not in r.text
    assert "series.yaml:" not in r.text  # the writer's words, not file:line
    assert not (editing.schedules_dir / "anxiety-at-work").exists()


def test_sent_parts_are_shown_locked_with_the_reason(
    signed_in: TestClient, editing: Settings
) -> None:
    with session_scope(editing.database_url) as db:
        part = db.scalar(select(Part).where(Part.filename == "01-what-co-created-means.md"))
        assert part is not None
        part.first_sent_at = dt.datetime(2026, 11, 3, 14, 0, tzinfo=dt.UTC)
    page = signed_in.get("/admin/series/co-created-process/edit").text
    assert "Sent to 0 readers since Tue 3 Nov 2026" in page
    first = page.index('id="part-1-title"')
    assert "readonly" in page[first : page.index(">", first)]
    second = page.index('id="part-2-title"')
    assert "readonly" not in page[second : page.index(">", second)]

    form = _form(
        page,
        title="Psychotherapy as a Co-Created Process",
        part_filename=["02-your-part-in-the-work.md", "01-what-co-created-means.md"],
        part_title=["a", "b"],
        part_summary=["a", "b"],
        part_body=["a", "b"],
    )
    r = signed_in.post("/admin/series/co-created-process/edit", data=form)
    assert r.status_code == 422
    assert "Part 1 was moved to position 2. Sent to 0 readers" in r.text


def test_a_stale_form_is_refused_and_says_why(signed_in: TestClient, editing: Settings) -> None:
    page = signed_in.get("/admin/series/co-created-process/edit").text
    yaml_file = editing.schedules_dir / "co-created-process" / "series.yaml"
    by_hand = yaml_file.read_text().replace("order: 2", "order: 3")
    yaml_file.write_text(by_hand)
    opened = re.findall(r'name="part_(title|summary)" value="([^"]*)"', page)
    assert opened
    form = _form(
        page,
        title="Changed in the browser",
        part_filename=["01-what-co-created-means.md", "02-your-part-in-the-work.md"],
        part_title=["a", "b"],
        part_summary=["a", "b"],
        part_body=["a", "b"],
    )
    r = signed_in.post("/admin/series/co-created-process/edit", data=form)
    assert r.status_code == 422
    assert "were changed since you opened this page" in r.text
    assert yaml_file.read_text() == by_hand


def test_a_broken_series_folder_says_what_to_fix(signed_in: TestClient, editing: Settings) -> None:
    yaml_file = editing.schedules_dir / "co-created-process" / "series.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("send_time:", "sendtime:"))
    r = signed_in.get("/admin/series/co-created-process/edit")
    assert r.status_code == 422
    assert "unknown key &#39;sendtime&#39;" in r.text
    assert signed_in.get("/admin/series/no-such-series/edit").status_code == 404


def test_the_preview_renders_the_part_being_written(
    signed_in: TestClient, editing: Settings
) -> None:
    page = signed_in.get("/admin/series/new").text
    data = {
        "csrf_token": csrf_in(page),
        "series_title": "Anxiety at Work",
        "slug": "",
        "number": "2",
        "count": "3",
        "title": "Myth: just relax",
        "summary": "Why it rarely works.",
        "body": "## Breathing\n\nSlow breaths help **some** people.",
        "mode": "light",
    }
    r = signed_in.post("/admin/series-editor/preview", data=data)
    assert r.status_code == 200
    body = r.json()
    assert body["subject"] == "Myth: just relax" and body["preheader"] == "Why it rarely works."
    assert "Slow breaths help some people." in body["text"]
    assert body["limits"] == {"subject": 60, "preview": 90}

    light = signed_in.post("/admin/series-editor/email.html", data=data)
    assert light.status_code == 200
    assert re.search(r"help <strong[^>]*>some</strong> people", light.text)
    assert "Anxiety at Work" in light.text and editing.postal_address in light.text
    assert "@media (prefers-color-scheme: dark)" in light.text
    assert "frame-ancestors 'self'" in light.headers["content-security-policy"]
    assert "script-src" not in light.headers["content-security-policy"]
    assert light.headers["content-security-policy"].split(";")[0] == "sandbox"
    dark = signed_in.post("/admin/series-editor/email.html", data={**data, "mode": "dark"})
    assert "@media (prefers-color-scheme: dark)" not in dark.text and "@media all" in dark.text
    assert (
        signed_in.post("/admin/series-editor/preview", data={**data, "csrf_token": "x"}).status_code
        == 400
    )


def test_the_broadcasts_page_shares_the_preview_as_one_letter(
    signed_in: TestClient, editing: Settings
) -> None:
    page = signed_in.get("/admin/broadcasts")
    assert 'data-letter="broadcast"' in page.text and 'id="preview-form"' in page.text
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    data = {
        "csrf_token": csrf_in(page.text),
        "series_title": "Closed on Friday",
        "title": "Closed on Friday",
        "summary": "Back Monday.",
        "body": "We are closed.\n\nBack on Monday.",
        "mode": "light",
    }
    as_part = signed_in.post("/admin/series-editor/email.html", data=data).text
    as_letter = signed_in.post(
        "/admin/series-editor/email.html", data={**data, "kind": "broadcast"}
    ).text
    assert "Part 1 of 1" in as_part and "A letter from" not in as_part
    assert "A letter from" in as_letter and "Part 1 of 1" not in as_letter
    text = signed_in.post("/admin/series-editor/preview", data={**data, "kind": "broadcast"})
    assert "Back on Monday." in text.json()["text"]


def test_previews_reuse_one_renderer_and_keep_no_articles(
    signed_in: TestClient, editing: Settings
) -> None:
    from newsletter.web.admin import editor

    page = signed_in.get("/admin/series/new").text
    for n in range(3):
        data = {"csrf_token": csrf_in(page), "title": f"Subject {n}", "body": f"Body {n}."}
        assert signed_in.post("/admin/series-editor/preview", data=data).json()["subject"] == (
            f"Subject {n}"
        )
    assert len(editor._renderers) == 1
    (_stamp, renderer), *_ = editor._renderers.values()
    assert renderer._articles == {}


def test_previews_render_off_the_event_loop_and_refuse_too_much_text(
    signed_in: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long article once rendered inside `async def` and held every page for seconds: the
    rendering runs in a worker thread (no event loop there), and over the cap it doesn't run."""
    from newsletter.web.admin import editor

    loops: list[bool] = []
    monkeypatch.setattr(editor, "_preview", loop_watch(editor._preview, loops))
    monkeypatch.setattr(series_editor, "save", loop_watch(series_editor.save, loops))
    page = signed_in.get("/admin/series/new").text
    data = {"csrf_token": csrf_in(page), "title": "Subject", "body": "Body."}
    assert signed_in.post("/admin/series-editor/preview", data=data).status_code == 200
    assert signed_in.post("/admin/series-editor/email.html", data=data).status_code == 200
    assert signed_in.post("/admin/series/new", data=_form(page)).status_code == 303  # saving
    assert loops == [False, False, False]

    huge = {**data, "body": "word " * (editor.PREVIEW_MAX_TEXT // 5 + 1)}
    refused = signed_in.post("/admin/series-editor/preview", data=huge)
    assert refused.status_code == 413
    assert refused.json()["error"].startswith("This part is too long to preview (200,0")
    frame = signed_in.post("/admin/series-editor/email.html", data=huge)
    assert frame.status_code == 413 and "too long to preview" in frame.text
    assert frame.headers["content-security-policy"].startswith("sandbox;")
    assert loops == [False, False, False]  # nothing over the cap was rendered
    flood = {**data, "body": "x" * (3 * 1024 * 1024)}  # refused before the form is parsed
    assert signed_in.post("/admin/series-editor/preview", data=flood).status_code == 413


def _outside(settings: Settings) -> dict[str, bytes | None]:
    """Every file and folder of the test's folder except schedules/, var/ and the database."""
    top = Path(settings.schedules_dir).parent
    found: dict[str, bytes | None] = {}
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(top)
        if rel.parts[0] in ("schedules", "var", "outbox") or rel.name.startswith("newsletter.db"):
            continue
        found[str(rel)] = None if path.is_dir() else path.read_bytes()
    return found


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"part_filename": [f"{'{TMP}'}/x.pth", "", ""]}, "part-1"),
        ({"part_filename": ["", "../../x.md", ""]}, "part-2"),
        ({"slug": "evil #/../../../outside-series"}, "slug"),
        ({"send_time": "08:30\u2028cadence: fortnightly"}, "send_time"),
        ({"description": "Calm.\u2028send_day: sunday"}, "description"),
    ],
)
def test_a_hostile_editor_form_writes_nothing(
    signed_in: TestClient, editing: Settings, fields: dict[str, Any], where: str
) -> None:
    """The attacks that once wrote outside schedules/ (a .pth file in the virtualenv ran code),
    through the page: refused at their field, nothing written anywhere."""
    tmp = Path(editing.schedules_dir).parent
    (tmp / "site-packages").mkdir()
    (tmp / "x.md").write_text("beside schedules/\n")
    if "part_filename" in fields:
        fields = {"part_filename": [n.replace("{TMP}", str(tmp)) for n in fields["part_filename"]]}
    before, schedules = _outside(editing), _tree(Path(editing.schedules_dir))
    page = signed_in.get("/admin/series/new").text
    r = signed_in.post("/admin/series/new", data=_form(page, **fields))
    assert r.status_code == 422
    assert f'id="err-{where}"' in r.text  # the problem is shown at its field
    assert _outside(editing) == before
    assert _tree(Path(editing.schedules_dir)) == schedules  # no folder, no staging leftovers


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }
