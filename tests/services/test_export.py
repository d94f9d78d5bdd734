"""An export imports back as it was: `newsletter subscribers export` -> `subscribers import`
(dry run, then for real, into a fresh database) -> export gives the same file, CSV and JSON,
with readers in every state, several series choices, a broadcast sent to some, a pause, a
fortnightly cadence, zones far from the default and consent records."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import shutil
from pathlib import Path

import pytest
from engine_support import delete_prefixed, ship, utc
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from newsletter.cli import app as cli
from newsletter.content.letter import letter
from newsletter.core.config import Settings, get_settings, load_settings
from newsletter.engine.tick import tick
from newsletter.queue.dueset import RedisQueue
from newsletter.services import (
    broadcasts,
    export,
    import_reading,
    importing,
    preferences,
    roster,
    signup,
)
from newsletter.services.import_standing import STANDING_COLUMNS
from newsletter.store import db
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ACTIVE,
    BOUNCED,
    BROADCAST_KIND,
    COMPLAINED,
    ENROLLED_ACTIVE,
    FORTNIGHTLY,
    PENDING,
    SENT,
    UNSUBSCRIBED,
    Base,
    Delivery,
    Enrollment,
    Series,
    Subscriber,
)

NOW = utc(2026, 3, 2, 12, 0)  # a Monday
MYTHS, TOGETHER = "myths-about-psychotherapy", "co-created-process"
IP = "203.0.113.9"
NOTE = letter("A group in spring", "Details inside.", "A group starts in April.\n")


def _signup(
    settings: Settings, email: str, zone: str, series: list[str] | None, *, confirm: bool
) -> int:
    """A reader of the public form: consent recorded with its IP, form and wording."""
    with session_scope(settings.database_url) as session:
        found = signup.subscribe(
            session,
            email,
            email.split("@")[0].title(),
            zone,
            series,
            IP,
            "signup",
            NOW,
            secret=settings.secret,
        )
        assert found.subscriber is not None
        if confirm:
            assert signup.confirm(session, found.subscriber, NOW + dt.timedelta(hours=1), ip=IP)
        return found.subscriber.id


def _choose(settings: Settings, sub_id: int, prefs: preferences.Preferences) -> None:
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sub_id)
        assert sub is not None
        preferences.update_preferences(session, sub, prefs, NOW + dt.timedelta(hours=2))


def _provider_says(settings: Settings, email: str, status: str) -> None:
    """What engine.events writes for a bounce or a complaint."""
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email_key == email)
            .values(status=status, unsubscribed_at=NOW + dt.timedelta(days=3))
        )


def build_list(settings: Settings) -> None:
    """Readers in every state and with every kind of choice, a broadcast sent to some of them
    and the first parts of the series gone out."""
    ship(settings, NOW)
    ada = _signup(settings, "ada@example.org", "Asia/Kolkata", None, confirm=True)
    _signup(settings, "pia@example.org", "Europe/Berlin", [TOGETHER], confirm=False)
    pat = _signup(settings, "pat@example.org", "America/Denver", [MYTHS], confirm=False)
    _choose(  # pending, and unticks every series on the preference page
        settings, pat, preferences.Preferences(series_slugs=[], timezone="America/Denver")
    )
    ben = roster.add_subscriber(
        settings,
        email="ben@example.org",
        name="=Ben, the formula",
        timezone="Pacific/Chatham",
        confirmed=True,
        method="cli",
        now=NOW,
    )
    _choose(  # fortnightly, paused, no new series, Myths deselected (a cancelled enrollment)
        settings,
        ben,
        preferences.Preferences(
            series_slugs=[TOGETHER],
            cadence=FORTNIGHTLY,
            paused_until=dt.date(2026, 4, 20),
            timezone="Pacific/Chatham",
            name="=Ben, the formula",
            takes_new_series=False,
        ),
    )
    cy = roster.add_subscriber(
        settings, email="cy@example.org", timezone="Europe/London", confirmed=True, now=NOW
    )
    _choose(  # deselects everything: takes no series
        settings, cy, preferences.Preferences(series_slugs=[], timezone="Europe/London")
    )
    for email in ("uma@example.org", "bo@example.org", "cat@example.org"):
        _signup(settings, email, "Australia/Sydney", [MYTHS], confirm=True)
    broadcasts.create(  # to Ada and the three above; Ben left Myths, so not him
        settings,
        NOTE,
        broadcasts.parse_audience(f"series:{MYTHS}"),
        broadcasts.parse_when("now", settings, NOW + dt.timedelta(hours=3)),
        in_archive=False,
        now=NOW + dt.timedelta(hours=3),
    )
    tick(settings, NOW + dt.timedelta(hours=3, minutes=1))
    tick(settings, NOW + dt.timedelta(days=8))  # Myths part 1 for those it is due to
    with session_scope(settings.database_url) as session:
        sent_letters = session.scalar(
            select(text("count(*)"))
            .select_from(Delivery)
            .join(Series, Series.id == Delivery.series_id)
            .where(Series.kind == BROADCAST_KIND, Delivery.status == SENT)
        )
        assert sent_letters == 4  # the broadcast went to some readers
        sub = session.scalar(select(Subscriber).where(Subscriber.id == ada))
        assert sub is not None and sub.consent_ip == IP
    with session_scope(settings.database_url) as session:
        uma = roster.find(session, "uma@example.org")
        assert uma is not None
        roster.unsubscribe(settings, session, uma, NOW + dt.timedelta(days=2))
    _provider_says(settings, "bo@example.org", BOUNCED)
    _provider_says(settings, "cat@example.org", COMPLAINED)


STATES = {ACTIVE: 3, PENDING: 2, UNSUBSCRIBED: 1, BOUNCED: 1, COMPLAINED: 1}


@pytest.fixture
def fresh(
    settings: Settings,
    sqlite_template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> object:
    """Switch this test (and the CLI) to a fresh, empty database and Redis prefix."""
    prefixes: list[str] = []

    def switch(name: str) -> Settings:
        if settings.database_url.startswith("sqlite"):
            path = tmp_path / f"{name}.db"
            shutil.copy(sqlite_template, path)
            url = f"sqlite:///{path}"
        else:  # the test's own PostgreSQL database, emptied (the export is already written)
            url = settings.database_url
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            with db.get_engine(url).begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        prefix = f"{settings.redis_prefix}{name}:"
        prefixes.append(prefix)
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
        monkeypatch.setenv("NEWSLETTER_REDIS_PREFIX", prefix)
        get_settings.cache_clear()
        return load_settings()

    yield switch
    for prefix in prefixes:
        delete_prefixed(settings.redis_url, prefix)


def _cli(*args: str) -> str:
    get_settings.cache_clear()
    done = CliRunner().invoke(cli, ["subscribers", *args])
    assert done.exit_code == 0, done.output
    return done.output


def _export(tmp_path: Path, kind: str, name: str) -> bytes:
    path = tmp_path / f"{name}.{kind}"
    _cli("export", "--format", kind, "--output", str(path))
    return path.read_bytes()


def _world(settings: Settings) -> dict[str, tuple[object, ...]]:
    """Per address: status, the series enrolled in (slug, state) and whether Redis has a due
    part for them."""
    queue = RedisQueue(settings)
    due = {int(m) for m in queue.redis.zrange(queue.due_key, 0, -1)}
    with session_scope(settings.database_url) as session:
        people = {s.id: s for s in session.scalars(select(Subscriber))}
        rows = session.execute(
            select(Enrollment, Series.slug)
            .join(Series, Series.id == Enrollment.series_id)
            .order_by(Enrollment.position)
        ).all()
    world: dict[str, tuple[object, ...]] = {}
    for sub in people.values():
        mine = [(slug, e.state, e.id in due) for e, slug in rows if e.subscriber_id == sub.id]
        world[sub.email_key] = (sub.status, tuple(mine))
    return world


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_an_export_imports_back_as_it_was(
    settings: Settings, fresh: object, tmp_path: Path, kind: str
) -> None:
    build_list(settings)
    first = _export(tmp_path, kind, "first")
    assert BROADCAST_KIND not in first.decode()  # sanity: the broadcast's slug is not there
    assert b"spring" not in first

    imported = fresh("fresh")  # type: ignore[operator]
    ship(imported, NOW)  # the new install: the same series, queued (no broadcast)
    path = tmp_path / f"first.{kind}"
    dry = json.loads(_cli("import", str(path), "--dry-run", "--json"))
    assert dry["invalid"] == []  # the dry run of an export refuses no row
    assert dry["ignored_columns"] == []  # every column the export writes is read
    assert (dry["rows"], dry["new"], dry["states"]) == (8, 8, STATES)
    with session_scope(imported.database_url) as session:
        assert session.scalars(select(Subscriber)).first() is None  # a dry run writes nothing

    done = json.loads(_cli("import", str(path), "--json"))
    assert (done["new"], done["invalid"], done["states"]) == (8, [], STATES)
    assert done["confirmations_sent"] == 2  # the two pending readers: a link that works here

    second = _export(tmp_path, kind, "second")
    assert second.decode() == first.decode()  # the same file: people, states, choices, consent

    world = _world(imported)
    assert world["ada@example.org"] == (
        ACTIVE,
        ((MYTHS, ENROLLED_ACTIVE, True), (TOGETHER, "queued", False)),
    )
    assert world["ben@example.org"] == (ACTIVE, ((TOGETHER, ENROLLED_ACTIVE, True),))
    assert world["cy@example.org"] == (ACTIVE, ())  # takes no series: nothing to send
    for email in ("pia", "pat", "uma", "bo", "cat"):  # pending or suppressed: nothing queued
        assert world[f"{email}@example.org"][1] == (), email
    assert {w[0] for e, w in world.items() if e[:2] in ("um", "bo", "ca")} == {
        UNSUBSCRIBED,
        BOUNCED,
        COMPLAINED,
    }
    with session_scope(imported.database_url) as session:
        ben = roster.find(session, "ben@example.org")
        assert ben is not None
        assert (ben.cadence, ben.paused_until, ben.takes_new_series) == (
            FORTNIGHTLY,
            dt.date(2026, 4, 20),
            False,
        )
        ada = roster.find(session, "ada@example.org")
        assert ada is not None
        assert (ada.consent_method, ada.consent_ip, ada.consent_form) == ("form", IP, "signup")
        assert ada.consent_wording is not None


def test_every_column_the_export_writes_is_one_the_import_reads() -> None:
    read = set(import_reading.COLUMNS) | set(STANDING_COLUMNS)
    assert set(export.EXPORT_FIELDS) == read


def test_the_dry_run_names_the_columns_it_does_not_import(settings: Settings) -> None:
    ship(settings, NOW)
    text_ = "id,email,Notes,status\n7,ann@example.org,met at a talk,active\n"
    report = importing.import_csv(settings, io.BytesIO(text_.encode()), dry_run=True, now=NOW)
    assert report.ignored_columns == ["id", "Notes"]
    # "active" without consent evidence: what the flag says (no --confirmed: pending)
    assert (report.new, report.invalid, report.states) == (1, [], {PENDING: 1})


BAD_STANDING = [  # (the cells after email, the column the reason must name)
    ("active,weekly,,yes,form,yesterday", "consent_at"),
    ("erased,weekly,,yes,,", "status"),
    ("sleeping,weekly,,yes,,", "status"),
    ("active,daily,,yes,,", "cadence"),
    ("active,weekly,20 April,yes,,", "paused_until"),
    ("active,weekly,,perhaps,,", "takes_new_series"),
    ("active,weekly,,yes,f\x07rm,2026-03-02T12:00:00+00:00", "consent_method"),
]


def test_a_bad_standing_cell_is_refused_by_its_column_never_quoting_it(
    settings: Settings,
) -> None:
    ship(settings, NOW)
    header = "email,status,cadence,paused_until,takes_new_series,consent_method,consent_at\n"
    body = "".join(f"r{i}@example.org,{cells}\n" for i, (cells, _) in enumerate(BAD_STANDING))
    report = importing.import_csv(
        settings, io.BytesIO((header + body).encode()), dry_run=True, confirmed=True, now=NOW
    )
    assert [p.line for p in report.invalid] == list(range(2, 2 + len(BAD_STANDING)))
    for problem, (cells, column) in zip(report.invalid, BAD_STANDING, strict=True):
        assert problem.reason.startswith(f"{column}: "), problem
        odd = [c for c in cells.split(",") if c not in ("", "active", "weekly", "yes", "erased")]
        assert not any(c in problem.reason for c in odd), problem
    assert "erased" in report.invalid[1].reason and report.new == 0


def test_the_json_export_writes_each_row_as_json_dumps_does(settings: Settings) -> None:
    # the rows are put together from escaped values and fixed keys: each must be the text
    # json.dumps(row, ensure_ascii=False) writes, and read back to the stored values
    tricky = ['Quote " and \\ back', "line\nbreak\ttab\r\x01\x1f", "Zoë 東京 \u2028 😀", None]
    with session_scope(settings.database_url) as session:
        for n, name in enumerate(tricky):
            session.add(
                Subscriber(
                    public_id=f"j{n}",
                    email=f"j{n}@example.org",
                    email_key=f"j{n}@example.org",
                    name=name,
                    timezone="Europe/London",
                    status=ACTIVE,
                    takes_new_series=n % 2 == 0,
                    requested_series=["a", "b"] if n else None,
                )
            )
    text = "".join(export.export_json(settings))
    assert text.startswith("[\n") and text.endswith("\n]\n")
    lines = text[2:-3].split(",\n")
    assert len(lines) == len(tricky)
    for line in lines:
        assert line == json.dumps(json.loads(line), ensure_ascii=False)
    rows = json.loads(text)
    assert [r["name"] for r in rows] == tricky
    assert [r["takes_new_series"] for r in rows] == [True, False, True, False]
    assert [r["series"] for r in rows] == ["", "a b", "a b", "a b"]
    assert list(rows[0]) == list(export.EXPORT_FIELDS)


@pytest.mark.parametrize("dirty", [0, 1, 40])
def test_a_page_of_csv_is_what_csv_writer_writes(dirty: int) -> None:
    # the page is joined without the writer when no cell needs quoting; each cell that holds
    # the delimiter, a quote, a line end or the join character must still come out quoted
    rng = random.Random(dirty)
    plain = ["", "a", "Zoë", "'quote", "x y", "2026-03-02T12:00:00+00:00"]
    tricky = [",", '"', "\r", "\n", "\r\n", "\x00", 'say "hi", then\nbye', "a\x00b"]
    rows = [tuple(rng.choice(plain) for _ in export.EXPORT_FIELDS) for _ in range(200)]
    for n in range(dirty):
        row = list(rows[n * 5])
        row[rng.randrange(len(row))] = rng.choice(tricky)
        rows[n * 5] = tuple(row)
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\r\n").writerows(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    assert export._csv_text(rows, writer, buffer) == expected.getvalue()
