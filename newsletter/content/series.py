"""Series files (schedules/: series.yaml + Markdown parts) -> validated series specs."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from newsletter.content import names, reading
from newsletter.core.vocabulary import CADENCES, WEEKDAYS, WEEKLY

SERIES_FILE = "series.yaml"
PART_KEYS = ("title", "summary")
DEFAULT_ORDER = 100
MAX_ORDER = 1_000_000
MAX_FILENAME = names.MAX_PART_NAME  # parts.filename


_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class ContentError(Exception):
    """Series content is invalid; `.errors` lists "path:line: message" strings."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class PartSpec:
    number: int  # 1-based, the position in series.yaml's `parts`
    filename: str
    title: str
    summary: str
    body_md: str
    content_hash: str
    path: Path = field(default=Path(), compare=False)
    line: int = field(default=1, compare=False)  # the line in series.yaml that lists this part


@dataclass(frozen=True)
class SeriesSpec:
    slug: str
    title: str
    description: str
    send_day: int  # 0 = Monday … 6 = Sunday
    send_time: str  # "HH:MM", subscriber-local
    cadence: str
    order: int | None
    parts: list[PartSpec]
    path: Path = field(default=Path(), compare=False)  # the series.yaml file
    content_hash: str = ""


def _hash(*values: object) -> str:
    digest = hashlib.sha256()
    for value in values:
        digest.update(repr(value).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _load_part(path: Path, number: int, listed_at: int, errors: list[str]) -> PartSpec | None:
    before = len(errors)
    text = reading.read(path, errors)
    if text is None:
        return None
    split = reading.split_front_matter(path, text, errors)
    if split is None:
        return None
    front, body, body_line = split
    parsed = reading.mapping(path, front, PART_KEYS, errors, offset=1)
    if parsed is None:
        return None
    nodes, lines = parsed
    for key in PART_KEYS:
        if key not in nodes:
            errors.append(f"{path}:1: front matter is missing {key}:")
    title = reading.string(path, "title", nodes, lines, errors)
    summary = reading.string(path, "summary", nodes, lines, errors)
    control = reading.CONTROL.search(body)
    if control is not None:
        line = reading.line_at(body, control.start()) + body_line - 1
        errors.append(f"{path}:{line}: the article {reading.control_problem(body)}")
    body = body.strip("\n")
    if not body.strip():
        errors.append(f"{path}:{body_line}: the article body is empty")
    if len(errors) > before or title is None or summary is None:
        return None
    body_md = body.rstrip() + "\n"
    return PartSpec(
        number=number,
        filename=path.name,
        title=title,
        summary=summary,
        body_md=body_md,
        content_hash=_hash(title, summary, body_md),
        path=path,
        line=listed_at,
    )


def load_series(folder: Path) -> SeriesSpec:
    """Load one series folder; raise ContentError listing every problem found."""
    errors: list[str] = []
    spec = _load_series(folder, errors)
    if errors or spec is None:
        raise ContentError(errors or [f"{folder}:1: could not load series"])
    return spec


@dataclass(frozen=True)
class _File:
    """The series.yaml being read: where problems point, and the list they go to."""

    path: Path
    folder: Path
    text: str
    errors: list[str]


# A field's reader: (file, key, value node, line of the key) -> the value, or None with the
# problem recorded in file.errors.
Reader = Callable[[_File, str, yaml.Node, int], object]


def _text(check: Callable[[str], str | None] | None = None) -> Reader:
    """Non-empty text without control characters (reading.string), then `check`'s problem."""

    def read(file: _File, key: str, node: yaml.Node, line: int) -> str | None:
        value = reading.string(file.path, key, {key: node}, {key: line}, file.errors)
        problem = check(value) if check is not None and value is not None else None
        if problem is not None:
            file.errors.append(f"{file.path}:{line}: {problem}")
        return value

    return read


def _scalar(parse: Callable[[str], object], problem: Callable[[str], str]) -> Reader:
    """A scalar's stripped text through `parse` (None: refused, with `problem(text)`)."""

    def read(file: _File, key: str, node: yaml.Node, line: int) -> object:
        raw = (reading.scalar(node) or "").strip()
        value = parse(raw)
        if value is None:
            file.errors.append(f"{file.path}:{line}: {problem(raw)}")
        return value

    return read


def _weekday(raw: str) -> int | None:
    matches = [i for i, day in enumerate(WEEKDAYS) if len(raw) >= 3 and day.startswith(raw.lower())]
    return matches[0] if len(matches) == 1 else None


def _order(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() and int(raw) <= MAX_ORDER else None


def _parts(file: _File, key: str, node: yaml.Node, line: int) -> list[PartSpec]:
    """The listed Markdown files, each loaded; a problem per bad, repeated or missing name."""
    path, folder, errors = file.path, file.folder, file.errors
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        errors.append(f"{path}:{line}: parts must be a list of Markdown file names, in order")
        return []
    parts: list[PartSpec] = []
    seen: dict[str, int] = {}
    for number, item in enumerate(node.value, start=1):
        line = reading.node_line(item, file.text)
        name = (reading.scalar(item) or "").strip()
        name_problem = names.part_name_problem(name)
        if name_problem is not None:
            errors.append(f"{path}:{line}: part {number}: {name_problem}")
            continue
        if name in seen:
            errors.append(
                f"{path}:{line}: part file {name!r} listed twice (also on line {seen[name]})"
            )
            continue
        seen[name] = line
        part_path = folder / name
        try:
            found = part_path.is_file()
        except OSError:
            found = False
        if not found:
            errors.append(f"{path}:{line}: part file {name!r} not found in {folder}")
            continue
        part = _load_part(part_path, number, line, errors)
        if part is not None:
            parts.append(part)
    return parts


@dataclass(frozen=True)
class Field:
    """One key of series.yaml: how it is read (with its problem text), required or its default."""

    name: str
    read: Reader
    required: bool = False
    default: object = None


# series.yaml's keys, in the order they are checked (and problems are listed).
FIELDS = (
    Field("slug", _text(names.slug_problem), required=True),
    Field("title", _text(), required=True),
    Field("description", _text(), default=""),
    Field(
        "send_day",
        _scalar(
            _weekday,
            lambda raw: (
                f"send_day {raw.lower() or '(empty)'!r} is not a weekday name (monday … sunday)"
            ),
        ),
        required=True,
    ),
    Field(
        "send_time",
        _scalar(
            lambda raw: raw if _TIME.match(raw) else None,
            lambda raw: f'send_time {raw or "(empty)"!r} must be "HH:MM" (24-hour, e.g. "09:00")',
        ),
        required=True,
    ),
    Field(
        "cadence",
        _scalar(
            lambda raw: raw if raw in CADENCES else None,
            lambda raw: f"cadence {raw!r} must be one of {', '.join(CADENCES)}",
        ),
        default=WEEKLY,
    ),
    Field(
        "order",
        _scalar(
            _order,
            lambda raw: f"order {raw[:40]!r} must be a whole number from 0 to {MAX_ORDER:,}",
        ),
    ),
    Field("parts", _parts, required=True),
)
SERIES_KEYS = tuple(f.name for f in FIELDS)
REQUIRED_SERIES_KEYS = tuple(f.name for f in FIELDS if f.required)


def _load_series(folder: Path, errors: list[str]) -> SeriesSpec | None:
    path = folder / SERIES_FILE
    if not path.is_file():
        errors.append(f"{path}:1: missing {SERIES_FILE} (every series folder needs one)")
        return None
    before = len(errors)
    text = reading.read(path, errors)
    if text is None:
        return None
    parsed = reading.mapping(path, text, SERIES_KEYS, errors)
    if parsed is None:
        return None
    nodes, lines = parsed
    missing = [key for key in REQUIRED_SERIES_KEYS if key not in nodes]
    if missing:
        errors.append(f"{path}:1: missing required key(s): {', '.join(missing)}")
    file = _File(path, folder, text, errors)
    values = {
        f.name: f.read(file, f.name, nodes[f.name], lines[f.name]) if f.name in nodes else f.default
        for f in FIELDS
    }
    if len(errors) > before:
        return None
    parts: list[PartSpec] = values.pop("parts")  # type: ignore[assignment]
    spec = SeriesSpec(**values, parts=parts, path=path)  # type: ignore[arg-type]
    return dataclasses.replace(spec, content_hash=_spec_hash(spec))


def _spec_hash(spec: SeriesSpec) -> str:
    return _hash(
        spec.slug,
        spec.title,
        spec.description,
        spec.send_day,
        spec.send_time,
        spec.cadence,
        spec.order,
        [p.content_hash for p in spec.parts],
    )


def _series_folders(path: Path, errors: list[str]) -> list[Path]:
    if not path.exists():
        errors.append(f"{path}:1: no such file or folder")
        return []
    if path.is_file():
        path = path.parent if path.name == SERIES_FILE else path
        if path.is_file():
            errors.append(f"{path}:1: expected a schedules folder or a series folder")
            return []
    if (path / SERIES_FILE).is_file():
        return [path]
    folders = []
    for child in sorted(path.iterdir()):
        if not child.is_dir() or child.name.startswith((".", "_")):
            continue
        folders.append(child)
    return folders


def _load(path: Path, errors: list[str]) -> list[SeriesSpec]:
    specs: list[SeriesSpec] = []
    for folder in _series_folders(Path(path), errors):
        spec = _load_series(folder, errors)
        if spec is not None:
            specs.append(spec)
    first: dict[str, SeriesSpec] = {}
    for spec in specs:
        if spec.slug in first:
            errors.append(
                f"{spec.path}:{_slug_line(spec.path)}: duplicate slug {spec.slug!r} "
                f"(also in {first[spec.slug].path}:{_slug_line(first[spec.slug].path)})"
            )
        else:
            first[spec.slug] = spec
    return sorted(specs, key=lambda s: (s.order if s.order is not None else DEFAULT_ORDER, s.slug))


def _slug_line(path: Path) -> int:
    text = reading.read(path, [])
    try:
        root = yaml.compose(text or "", Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return 1
    if text is not None and isinstance(root, yaml.MappingNode):
        for key, _value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "slug":
                return reading.node_line(key, text)
    return 1


def load_all(schedules_dir: Path | str) -> list[SeriesSpec]:
    """Every series under schedules_dir (sorted by order, slug); ContentError lists all problems."""
    errors: list[str] = []
    specs = _load(Path(schedules_dir), errors)
    if errors:
        raise ContentError(errors)
    return specs


Check = Callable[[SeriesSpec], Iterable[str]]


def validate(path: Path | str, check: Check | None = None) -> list[str]:
    """All problems ("file:line: message") in a schedules folder or one series folder.

    `check` adds problems found outside content, e.g. `Renderer.check` (every part renders
    through the email templates); content never imports render.
    """
    errors: list[str] = []
    specs = _load(Path(path), errors)
    if check is not None:
        for spec in specs:
            errors.extend(check(spec))
    return errors
