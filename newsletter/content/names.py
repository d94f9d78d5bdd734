"""Series slugs and part file names (the one rule for both), and paths proven inside a folder.

A slug names a folder under schedules/ and appears in archive links; a part name is a file in
that folder. Both are checked with these rules before anything touches the disk, by the
loader (`series validate`) and by the browser's editor alike; and every path the editor writes
is resolved (links followed) and proven inside schedules/ before it is opened.
"""

from __future__ import annotations

import re
from pathlib import Path

# Both are matched against the whole value (fullmatch: "$" would let a final "\n" through).
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # lower-case words joined by single hyphens
MAX_SLUG = 100  # series.slug
PART_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\.md")  # a Markdown file in the series folder
MAX_PART_NAME = 200  # parts.filename

SLUG_RULE = "lower-case letters, digits and single hyphens (e.g. myths-about-psychotherapy)"
PART_RULE = (
    "lower-case letters, digits, '-', '_' and '.', starting with a letter or digit and "
    "ending in .md (e.g. 03-next-steps.md)"
)


class OutsideError(ValueError):
    """A path would land outside the folder it must stay in (`..`, an absolute path, a link)."""


def is_slug(value: str) -> bool:
    return len(value) <= MAX_SLUG and bool(SLUG.fullmatch(value))


def slug_problem(value: str) -> str | None:
    """Why `value` can't be a slug, or None when it can."""
    if len(value) > MAX_SLUG:
        return f"the slug is too long (over {MAX_SLUG} characters)"
    if not SLUG.fullmatch(value):
        return f"slug {value[:60]!r} must be {SLUG_RULE}"
    return None


def part_name_problem(value: str) -> str | None:
    """Why `value` can't be a part's file name, or None when it can."""
    if not PART_NAME.fullmatch(value) or ".." in value:
        return (
            f"expected a file name in this folder, got {value[:60] or '(empty)'!r}: use {PART_RULE}"
        )
    if len(value) > MAX_PART_NAME:
        return f"the file name is too long (over {MAX_PART_NAME} characters)"
    return None


def inside(root: Path, *names: str) -> Path:
    """root/names…, resolved; OutsideError unless it lies strictly inside the resolved root."""
    base = Path(root).resolve()
    target = base.joinpath(*names).resolve()
    if target == base or not target.is_relative_to(base):
        raise OutsideError(f"{'/'.join(names)!r} is not inside {base}")
    return target
