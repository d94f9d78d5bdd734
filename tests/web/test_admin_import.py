"""The admin import page: a large file is imported in the background with a progress page that
polls a status; its final report is the one a small file gets at once."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_support import ship, utc
from fastapi.testclient import TestClient
from paths import file_mode
from pydantic import SecretStr
from sqlalchemy import delete, func, select
from web_helpers import csrf, sign_in

from newsletter.content import series as content
from newsletter.content.letter import letter
from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.services import broadcasts, import_jobs, roster
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import ACTIVE, Delivery, Enrollment, Subscriber
from newsletter.web.app import create_app

PASSWORD = "a calm and long password"
ROWS = 300  # above the threshold the tests set (import_jobs.LARGE_ROWS = 100)
BAD = {40: "not-an-address", 120: "x@example.org,,Mars/Olympus", 250: ""}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    admin = settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    with session_scope(admin.database_url) as session:
        series_store.sync(session, content.load_all(admin.schedules_dir))
    with TestClient(
        create_app(admin), base_url="https://news.example.org", follow_redirects=False
    ) as c:
        yield c


@pytest.fixture
def signed_in(client: TestClient) -> TestClient:
    sign_in(client, PASSWORD)
    return client


def _file(tag: str) -> bytes:
    """ROWS data rows (two repeats, three bad rows at fixed lines), the addresses tagged."""
    lines = ["email,name,timezone"]
    for i in range(ROWS):
        line = i + 2
        if line in BAD:
            lines.append(BAD[line] or "   ")  # blank row: skipped, not counted
        elif i % 100 == 7:
            lines.append(f"{tag}{i - 1}@example.org,Again,UTC")  # repeats the row before
        else:
            lines.append(f"{tag}{i}@example.org,Reader {i},Europe/London")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _check_then_import(c: TestClient, data: bytes) -> Any:
    token = csrf(c, "/admin/import")
    checked = c.post(
        "/admin/import",
        data={"csrf_token": token, "consented": "yes"},
        files={"file": ("list.csv", data, "text/csv")},
    )
    assert checked.status_code == 200 and "nothing has changed yet" in checked.text
    action = re.search(r'action="(/admin/import/[^"]+)"', checked.text)
    assert action
    return c.post(action[1], data={"csrf_token": token, "consented": "yes"})


def _report_numbers(page: str) -> list[str]:
    return re.findall(r'<span class="stat-number">(\d+)</span>', page)


def _wait_done(c: TestClient, status_url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60  # a wait for the thread, not a speed check
    while True:
        status = c.get(status_url)
        assert status.status_code == 200 and status.headers["cache-control"] == "no-store"
        body: dict[str, Any] = status.json()
        assert body["state"] in ("running", "done"), body
        assert 0 <= body["done"] <= body["total"]
        if body["state"] == "done" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


@pytest.mark.usefixtures("umask_022")
def test_an_uploaded_list_waits_in_a_0600_file_in_a_0700_folder(
    signed_in: TestClient, settings: Settings
) -> None:
    token = csrf(signed_in, "/admin/import")
    checked = signed_in.post(
        "/admin/import",
        data={"csrf_token": token, "consented": "yes"},
        files={"file": ("list.csv", _file("mode"), "text/csv")},
    )
    assert checked.status_code == 200
    folder = settings.var_dir / "imports"
    uploads = list(folder.glob("*.csv"))
    assert len(uploads) == 1 and file_mode(uploads[0]) == 0o600
    assert file_mode(folder) == 0o700


def test_a_large_file_imports_in_the_background_with_the_small_files_report(
    signed_in: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_jobs, "LARGE_ROWS", 10_000)
    small = _check_then_import(signed_in, _file("inline"))  # within the request, as before
    assert small.status_code == 200 and "Import done" in small.text

    monkeypatch.setattr(import_jobs, "LARGE_ROWS", 100)
    started = _check_then_import(signed_in, _file("background"))
    assert started.status_code == 303
    progress_url = started.headers["location"]
    upload = re.fullmatch(r"/admin/import/([A-Za-z0-9_-]+)/progress", progress_url)
    assert upload
    first = signed_in.get(progress_url)
    assert first.status_code == 200
    assert ("Importing" in first.text and "/static/import.js" in first.text) or (
        "Import done" in first.text
    )
    status = _wait_done(signed_in, f"/admin/import/{upload[1]}/status")
    assert status["state"] == "done" and status["done"] == status["total"]
    assert "example.org" not in json.dumps(status)  # counts, lines and reasons: no address

    final = signed_in.get(progress_url)
    assert final.status_code == 200 and "Import done" in final.text
    assert "import.js" not in final.text
    assert _report_numbers(final.text) == _report_numbers(small.text)
    assert [p["line"] for p in status["report"]["invalid"]] == [40, 120]
    assert status["invalid_count"] == 2
    # one blank row skipped, two bad, three repeats
    assert status["report"]["new"] == ROWS - 6 and status["report"]["duplicates"] == 3
    assert re.findall(r"<td>(\d+)</td><td>([^<]+)</td>", final.text) == re.findall(
        r"<td>(\d+)</td><td>([^<]+)</td>", small.text
    )
    with session_scope(settings.database_url) as session:
        landed = session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(Subscriber.email_key.like("background%"), Subscriber.status == ACTIVE)
        )
    assert landed == status["report"]["new"]
    # the file was deleted; a second click finds the upload gone
    again = signed_in.post(
        f"/admin/import/{upload[1]}",
        data={"csrf_token": csrf(signed_in, "/admin/import"), "consented": "yes"},
    )
    assert again.status_code == 303 and again.headers["location"] == "/admin/import"


def test_the_status_needs_an_admin_and_a_known_import(
    client: TestClient, signed_in: TestClient
) -> None:
    assert signed_in.get("/admin/import/" + "a" * 24 + "/status").status_code == 404
    assert signed_in.get("/admin/import/bad!/progress").status_code == 404
    signed_in.cookies.clear()
    assert signed_in.get("/admin/import/" + "a" * 24 + "/status").status_code == 303


def test_starting_twice_runs_one_import(
    signed_in: TestClient, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(_file("twice"))
    assert import_jobs.data_lines(path) == ROWS
    assert import_jobs.start(settings, "twice-upload-0000000", path, confirmed=True)
    assert not import_jobs.start(settings, "twice-upload-0000000", path, confirmed=True)
    status = _wait_done(signed_in, "/admin/import/twice-upload-0000000/status")
    assert status["state"] == "done" and status["report"]["new"] == ROWS - 6
    assert not path.exists()  # the upload (personal data) goes when the import ends


def test_the_admin_pages_export_imports_back_as_it_was(
    settings: Settings, signed_in: TestClient
) -> None:
    """Download the list, empty it, upload the download: the check refuses no row (the
    broadcast sent to the readers is not in the series column), the import keeps each status,
    and a second download is the same file."""
    now = utc(2026, 3, 2, 12, 0)
    ship(settings, now)
    for email in ("ann@example.org", "bea@example.org", "cal@example.org"):
        roster.add_subscriber(
            settings, email=email, timezone="Asia/Kolkata", confirmed=True, now=now
        )
    broadcasts.create(
        settings,
        letter("A note", "Short.", "A short note.\n"),
        broadcasts.parse_audience("all"),
        broadcasts.parse_when("now", settings, now),
        in_archive=False,
        now=now,
    )
    tick(settings, now + dt.timedelta(minutes=1))
    with session_scope(settings.database_url) as session:
        cal = roster.find(session, "cal@example.org")
        assert cal is not None
        roster.unsubscribe(settings, session, cal, now + dt.timedelta(days=1))
    first = signed_in.get("/admin/export.csv")
    assert first.status_code == 200
    with session_scope(settings.database_url) as session:
        session.execute(delete(Delivery))
        session.execute(delete(Enrollment))
        session.execute(delete(Subscriber))
    token = csrf(signed_in, "/admin/import")
    checked = signed_in.post(
        "/admin/import",
        data={"csrf_token": token},
        files={"file": ("subscribers.csv", first.content, "text/csv")},
    )
    assert checked.status_code == 200
    assert _report_numbers(checked.text) == ["3", "0", "0", "0"]  # new, known, repeated, bad
    assert "By status: active 2, unsubscribed 1" in checked.text
    assert "Columns not imported" not in checked.text
    action = re.search(r'action="(/admin/import/[^"]+)"', checked.text)
    assert action
    done = signed_in.post(action[1], data={"csrf_token": token})
    assert done.status_code == 200 and _report_numbers(done.text)[0] == "3"
    assert signed_in.get("/admin/export.csv").content == first.content


def test_a_mailchimp_export_is_read_as_one_with_its_tags_mapped_in_the_check(
    settings: Settings, signed_in: TestClient
) -> None:
    """The check names the tool and every column of its file, and offers each tag as a series
    choice; the import enrolls a person with a mapped tag in that series only."""
    fixture = Path(__file__).resolve().parents[1] / "corpus" / "csv" / "sources"
    data = (fixture / "mailchimp_subscribed.csv").read_bytes()
    token = csrf(signed_in, "/admin/import")
    checked = signed_in.post(
        "/admin/import",
        data={"csrf_token": token},
        files={"file": ("members.csv", data, "text/csv")},
    )
    assert checked.status_code == 200 and "Read as Mailchimp" in checked.text
    header = data.decode().splitlines()[0].split(",")
    for column in header:
        assert f"<code>{column}</code>" in checked.text
    assert checked.text.count('name="tag"') == 3  # Anxiety, Grief, Newsletter
    action = re.search(r'action="(/admin/import/[^"]+)"', checked.text)
    assert action
    done = signed_in.post(
        action[1],
        data={
            "csrf_token": token,
            "tag": ["Anxiety", "Grief", "Newsletter"],
            "tag_series": ["", "myths-about-psychotherapy", ""],
        },
    )
    assert done.status_code == 200 and _report_numbers(done.text)[0] == "4"
    with session_scope(settings.database_url) as session:
        ana = session.scalars(select(Subscriber).where(Subscriber.email == "ana@example.org")).one()
        assert (ana.status, ana.consent_method, ana.consent_ip) == (
            ACTIVE,
            "imported from Mailchimp",
            "192.0.2.10",
        )
        assert ana.requested_series == ["myths-about-psychotherapy"]  # her mapping
