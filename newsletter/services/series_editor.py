"""The browser's series editor: open a series folder as form values, save it back to schedules/.

The files stay the source of truth. Saving, under a per-series file lock (two tabs can't
interleave): refuse when the folder changed on disk since the form was opened (its token),
refuse changes to parts that have gone out, write every file into a staging folder beside the
series, run the same validator as `newsletter series validate` on it, move each changed file
into place with os.replace (parts first, series.yaml last, so the listed files always exist),
then run the same sync as "Reload from schedules/". Files whose values did not change keep
their bytes, so `git diff schedules/` shows exactly what the writer changed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from sqlalchemy import select

from newsletter.content import names, writing
from newsletter.content import series as content
from newsletter.content.writing import PartText, SeriesText
from newsletter.core.config import Settings
from newsletter.mail.render import Renderer
from newsletter.services import series_admin, series_files
from newsletter.services.editor_words import Problem, invisible, problems_for, worded
from newsletter.store import series as series_store
from newsletter.store import stats
from newsletter.store.db import session_scope
from newsletter.store.models import Part

NEW_TOKEN = "new"


class EditorError(Exception):
    """The series can't be saved as given; `.problems` say why, each tied to a form field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


@dataclass(frozen=True)
class SentPart:
    """A part that has gone out to someone: it can't be changed, moved or removed."""

    number: int
    filename: str
    sent_to: int
    first_sent_at: dt.datetime

    @property
    def reason(self) -> str:
        people = f"{self.sent_to} reader{'s' if self.sent_to != 1 else ''}"
        day = self.first_sent_at  # the admin's one date style: Tue 5 Jan 2027
        return (
            f"Sent to {people} since {day:%a} {day.day} {day:%b %Y}: readers already have "
            "it, so it can't be changed, moved or removed."
        )


@dataclass(frozen=True)
class Opened:
    """A series as the form shows it, the folder's token, and which parts are locked."""

    text: SeriesText
    token: str
    sent: dict[str, SentPart]  # by file name
    folder: Path


@dataclass(frozen=True)
class Saved:
    slug: str
    written: list[str]  # file names written (relative to schedules/), in the order written
    removed: list[str]
    summary: str  # what the sync did, or why it could not run


def folder_token(folder: Path) -> str:
    """A fingerprint of every file in a series folder (names and bytes): any edit changes it."""
    if not folder.is_dir():
        return NEW_TOKEN
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def find_folder(settings: Settings, slug: str) -> Path | None:
    """The folder under schedules/ whose series.yaml has this slug (usually schedules/<slug>)."""
    if not names.is_slug(slug):  # never a path: "..", "/", "#" can't reach the disk
        return None
    root = Path(settings.schedules_dir)
    candidates = [root / slug, *sorted(p for p in root.iterdir() if p.is_dir())]
    for folder in candidates:
        if folder.name.startswith((".", "_")) or not (folder / content.SERIES_FILE).is_file():
            continue
        try:
            data = yaml.safe_load((folder / content.SERIES_FILE).read_text("utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("slug") == slug:
            return folder
    return None


def as_text(spec: content.SeriesSpec) -> SeriesText:
    return SeriesText(
        slug=spec.slug,
        title=spec.title,
        description=spec.description,
        send_day=spec.send_day,
        send_time=spec.send_time,
        cadence=spec.cadence,
        order=spec.order,
        parts=[
            PartText(p.title, p.summary, p.body_md.rstrip("\n"), filename=p.filename)
            for p in spec.parts
        ],
    )


def sent_parts(settings: Settings, slug: str) -> dict[str, SentPart]:
    """The parts of a series that have gone out to anyone, by file name."""
    with session_scope(settings.database_url) as db:
        series = series_store.by_slug(db, slug)
        if series is None:
            return {}
        counts = stats.sent_counts(db, [series.id])
        rows = db.scalars(
            select(Part).where(Part.series_id == series.id, Part.first_sent_at.is_not(None))
        )
        return {
            p.filename: SentPart(
                p.number, p.filename, counts.get((series.id, p.number), 0), p.first_sent_at
            )
            for p in rows
            if p.first_sent_at is not None
        }


def open_series(settings: Settings, slug: str) -> Opened | None:
    """The series' files as form values (None: no such folder); EditorError if they're broken."""
    folder = find_folder(settings, slug)
    if folder is None:
        return None
    token = folder_token(folder)
    try:
        spec = content.load_series(folder)
    except content.ContentError as exc:
        raise EditorError([Problem("", e) for e in exc.errors]) from None
    return Opened(as_text(spec), token, sent_parts(settings, slug), folder)


@contextlib.contextmanager
def series_lock(settings: Settings, slug: str) -> Iterator[None]:
    """An exclusive lock on one series' files across processes and tabs (flock, var/locks)."""
    folder = Path(settings.var_dir) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(slug.encode()).hexdigest()[:32]  # any slug, never a path
    with open(folder / f"series-{name}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_problems(
    text: SeriesText,
    sent: dict[str, SentPart],
    on_disk: SeriesText,
    correcting: frozenset[str] = frozenset(),
) -> list[Problem]:
    """Sent parts must stay where they are, as they are (the text of those in `correcting`
    may change: a correction, services.corrections)."""
    problems = []
    current = {p.filename: p for p in on_disk.parts}
    positions = {p.filename: i for i, p in enumerate(text.parts, start=1) if p.filename}
    for name, lock in sorted(sent.items(), key=lambda item: item[1].number):
        where = f"part-{positions.get(name, lock.number)}"
        label = f"Part {lock.number}"
        if name not in positions:
            problems.append(Problem(where, f"{label} was removed. {lock.reason}"))
        elif positions[name] != lock.number:
            problems.append(
                Problem(
                    where,
                    f"{label} was moved to position {positions[name]}. {lock.reason} "
                    "Add new parts after it.",
                )
            )
        else:
            old, new = current.get(name), text.parts[positions[name] - 1]
            if old is not None and _values(old) != _values(new) and name not in correcting:
                problems.append(Problem(where, f"{label} was changed. {lock.reason}"))
    return problems


def _values(part: PartText) -> tuple[str, str, str]:
    return (
        writing.one_line(part.title),
        writing.one_line(part.summary),
        writing.body_text(part.body),
    )


def _series_values(text: SeriesText) -> tuple[object, ...]:
    return (
        text.slug,
        writing.one_line(text.title),
        writing.multi_line(text.description),
        text.send_day,
        text.send_time,
        text.cadence,
        text.order,
        [p.filename for p in text.parts],
    )


def _named(text: SeriesText) -> SeriesText:
    """Give each new part a file name (its position and title), unique in the series."""
    taken = {p.filename for p in text.parts if p.filename}
    parts = []
    for number, part in enumerate(text.parts, start=1):
        if not part.filename:
            name = writing.part_filename(number, part.title, taken)
            taken.add(name)
            part = replace(part, filename=name)
        parts.append(part)
    return replace(text, parts=parts)


def _slug_problems(settings: Settings, text: SeriesText) -> list[Problem]:
    if (
        find_folder(settings, text.slug) is not None
        or (Path(settings.schedules_dir) / text.slug).exists()
        or (Path(settings.schedules_dir) / text.slug).is_symlink()
    ):
        return [
            Problem(
                "slug",
                f"There is already a series called {text.slug!r}; choose another short name "
                "or open that series to edit it.",
            )
        ]
    return []


def _field_values(text: SeriesText) -> list[tuple[str, str, bool]]:
    """(form field, value, multi-line?) of every value written into YAML."""
    values = [
        ("slug", text.slug, False),
        ("title", text.title, False),
        ("description", text.description, True),
        ("send_time", text.send_time, False),
        ("cadence", text.cadence, False),
    ]
    for number, part in enumerate(text.parts, start=1):
        values.append((f"part-{number}-title", part.title, False))
        values.append((f"part-{number}-summary", part.summary, False))
    return values


def shape_problems(text: SeriesText) -> list[Problem]:
    """What must hold before anything touches the disk: every value writable into YAML (no
    control characters or Unicode line breaks), the slug and each part's file name by the one
    rule in content/names.py."""
    problems = []
    for field, value, lines in _field_values(text):
        bad = writing.unwritable(value, lines=lines)
        if bad is not None:
            problems.append(invisible(field, bad))
    if not any(p.field == "slug" for p in problems):
        slug_problem = names.slug_problem(text.slug) if text.slug else "slug must be non-empty text"
        if slug_problem is not None:
            problems.append(worded("slug", slug_problem))
    for number, part in enumerate(text.parts, start=1):
        name_problem = names.part_name_problem(part.filename) if part.filename else None
        if name_problem is not None:
            problems.append(
                Problem(
                    f"part-{number}",
                    f"Part {number} has a file name that can't be used ({name_problem}); "
                    "reload the page.",
                )
            )
    return problems


def save(
    settings: Settings,
    slug: str | None,
    text: SeriesText,
    token: str,
    now: dt.datetime,
    *,
    correcting: frozenset[str] = frozenset(),
) -> Saved:
    """Write the series to schedules/ and sync it; `slug` None for a new series; `correcting`:
    file names of sent parts whose text may change (a correction, services.corrections).

    EditorError (nothing written) for invalid values, a stale token or a locked part.
    """
    root = Path(settings.schedules_dir)
    problems = shape_problems(text if slug is None else replace(text, slug=slug))
    if problems:
        raise EditorError(problems)
    with series_lock(settings, text.slug if slug is None else slug):
        if slug is None:
            problems = _slug_problems(settings, text)
            folder, on_disk, sent = root / text.slug, None, {}
        else:
            found = find_folder(settings, slug)
            if found is None or folder_token(found) != token:
                raise EditorError([Problem("", stale_message(slug, found is None))])
            folder = found
            on_disk = as_text(content.load_series(found))
            sent = sent_parts(settings, slug)
            text = replace(text, slug=slug, order=on_disk.order)
        if on_disk is not None:
            problems += _lock_problems(text, sent, on_disk, correcting)
        text = _named(text)
        staged = {p.filename: writing.part_markdown(p) for p in text.parts}
        staged[content.SERIES_FILE] = writing.series_yaml(text)
        old = [p.filename for p in on_disk.parts] if on_disk else []
        targets = _targets(root, folder.name, [*staged, *old])
        series_files.clear_leftovers(root)
        stage = _inside(
            root, Path(tempfile.mkdtemp(prefix=series_files.STAGE_PREFIX, dir=root)).name
        )
        try:
            for name, data in staged.items():
                _inside(stage, name).write_text(data, "utf-8", newline="\n")
            errors = content.validate(stage, check=Renderer(settings).check)
            problems += problems_for(errors, stage, text)
            if problems:
                raise EditorError(problems)
            written, removed = _move_into_place(stage, targets, text, on_disk)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    summary = _sync(settings, now)
    return Saved(text.slug, [f"{text.slug}/{n}" for n in written], removed, summary)


def _inside(folder: Path, *parts: str) -> Path:
    """folder/parts…, resolved and proven inside folder; EditorError (nothing saved) if not."""
    try:
        return names.inside(folder, *parts)
    except names.OutsideError:
        raise EditorError(
            [
                Problem(
                    "",
                    f"{'/'.join(parts)[:80]!r} would be written outside schedules/ (a link "
                    "that points elsewhere?), so nothing was saved.",
                )
            ]
        ) from None


def _targets(root: Path, folder: str, files: list[str]) -> dict[str, Path]:
    """Where each file goes: every path resolved and proven inside schedules/<folder>/ before
    anything is written."""
    place = _inside(root, folder)
    return {"": place} | {name: _inside(place, name) for name in files}


def stale_message(slug: str, gone: bool) -> str:
    if gone:
        return f"The files of {slug!r} are no longer in schedules/, so nothing was saved."
    return (
        f"The files in schedules/{slug}/ were changed since you opened this page (by hand, "
        "or in another tab), so nothing was saved: saving would overwrite those changes. "
        "Your text is still in this form and in the browser's draft; open the series again "
        "to see the new version, then make your changes there."
    )


def _move_into_place(
    stage: Path, targets: dict[str, Path], text: SeriesText, on_disk: SeriesText | None
) -> tuple[list[str], list[str]]:
    """Rename each changed file from the staging folder into the series folder (atomic each);
    `targets` are the proven paths ("": the folder itself).

    Parts go first and series.yaml last, so series.yaml never lists a file that isn't there.
    """
    old = {p.filename: p for p in on_disk.parts} if on_disk else {}
    folder = targets[""]
    folder.mkdir(exist_ok=True)
    written: list[str] = []
    for part in text.parts:
        previous = old.get(part.filename)
        if previous is not None and _values(previous) == _values(part):
            continue  # unchanged: the file keeps its bytes
        series_files.replace_durably(stage / part.filename, targets[part.filename])
        written.append(part.filename)
    if on_disk is None or _series_values(on_disk) != _series_values(text):
        series_files.replace_durably(stage / content.SERIES_FILE, targets[content.SERIES_FILE])
        written.append(content.SERIES_FILE)
    listed = {p.filename for p in text.parts}
    removed = []
    for name in sorted(set(old) - listed):  # unsent parts the writer removed
        with contextlib.suppress(FileNotFoundError):
            targets[name].unlink()
            removed.append(name)
    series_files.fsync_dir(folder)
    return written, removed


def _sync(settings: Settings, now: dt.datetime) -> str:
    """The same sync as "Reload from schedules/"; a problem elsewhere leaves the files saved."""
    try:
        _read, report = series_admin.reload_series(settings, now)
    except content.ContentError as exc:
        first = exc.errors[0] if exc.errors else "unknown problem"
        return (
            "saved to the files, but not yet synced: another series under schedules/ has "
            f"a problem ({first}); fix it, then press Reload"
        )
    return report.summary()
