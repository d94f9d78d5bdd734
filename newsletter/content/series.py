"""Series files (schedules/: series.yaml + Markdown parts) -> validated series specs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from newsletter.content import names, reading
from newsletter.core.vocabulary import CADENCES, WEEKDAYS, WEEKLY

SERIES_FILE = "series.yaml"
SERIES_KEYS = ("slug", "title", "description", "send_day", "send_time", "cadence", "order", "parts")
REQUIRED_SERIES_KEYS = ("slug", "title", "send_day", "send_time", "parts")
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

    slug = reading.string(path, "slug", nodes, lines, errors)
    slug_problem = names.slug_problem(slug) if slug is not None else None
    if slug_problem is not None:
        errors.append(f"{path}:{lines['slug']}: {slug_problem}")
    title = reading.string(path, "title", nodes, lines, errors)
    description = ""
    if "description" in nodes:
        description = reading.string(path, "description", nodes, lines, errors) or ""

    send_day: int | None = None
    if "send_day" in nodes:
        raw = (reading.scalar(nodes["send_day"]) or "").strip().lower()
        matches = [i for i, day in enumerate(WEEKDAYS) if len(raw) >= 3 and day.startswith(raw)]
        if len(matches) == 1:
            send_day = matches[0]
        else:
            errors.append(
                f"{path}:{lines['send_day']}: send_day {raw or '(empty)'!r} is not a weekday "
                "name (monday … sunday)"
            )

    send_time: str | None = None
    if "send_time" in nodes:
        raw = (reading.scalar(nodes["send_time"]) or "").strip()
        if _TIME.match(raw):
            send_time = raw
        else:
            errors.append(
                f'{path}:{lines["send_time"]}: send_time {raw or "(empty)"!r} must be "HH:MM" '
                '(24-hour, e.g. "09:00")'
            )

    cadence = WEEKLY
    if "cadence" in nodes:
        raw = (reading.scalar(nodes["cadence"]) or "").strip()
        if raw in CADENCES:
            cadence = raw
        else:
            errors.append(
                f"{path}:{lines['cadence']}: cadence {raw!r} must be one of {', '.join(CADENCES)}"
            )

    order: int | None = None
    if "order" in nodes:
        raw = (reading.scalar(nodes["order"]) or "").strip()
        if raw.isascii() and raw.isdigit() and int(raw) <= MAX_ORDER:
            order = int(raw)
        else:
            errors.append(
                f"{path}:{lines['order']}: order {raw[:40]!r} must be a whole number "
                f"from 0 to {MAX_ORDER:,}"
            )

    parts: list[PartSpec] = []
    if "parts" in nodes:
        parts_node = nodes["parts"]
        if not isinstance(parts_node, yaml.SequenceNode) or not parts_node.value:
            errors.append(
                f"{path}:{lines['parts']}: parts must be a list of Markdown file names, in order"
            )
        else:
            seen: dict[str, int] = {}
            for number, item in enumerate(parts_node.value, start=1):
                line = reading.node_line(item, text)
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

    if len(errors) > before:
        return None
    assert slug and title and send_day is not None and send_time is not None
    return SeriesSpec(
        slug=slug,
        title=title,
        description=description,
        send_day=send_day,
        send_time=send_time,
        cadence=cadence,
        order=order,
        parts=parts,
        path=path,
        content_hash=_hash(
            slug,
            title,
            description,
            send_day,
            send_time,
            cadence,
            order,
            [p.content_hash for p in parts],
        ),
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
