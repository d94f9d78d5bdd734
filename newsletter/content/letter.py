"""A broadcast's letter: one Markdown file (front matter title and summary) or form fields -> a part."""

from __future__ import annotations

from pathlib import Path

from newsletter.content import reading
from newsletter.content.series import ContentError, PartSpec, _hash, _load_part


def load_letter(path: Path | str) -> PartSpec:
    """The letter in `path`, written like a series part; ContentError says what is wrong."""
    errors: list[str] = []
    part = _load_part(Path(path), 1, 1, errors)
    if errors or part is None:
        raise ContentError(errors or [f"{path}:1: could not read the letter"])
    return part


def letter(title: str, summary: str, body_md: str) -> PartSpec:
    """A letter from form fields (admin, API); ContentError for control characters or blanks."""
    errors: list[str] = []
    title, summary = " ".join(title.split()), " ".join(summary.split())
    for name, value in (("title", title), ("summary", summary), ("text", body_md)):
        problem = reading.control_problem(value)
        if problem is not None:
            errors.append(f"the {name} {problem}")
    if not title:
        errors.append("the letter needs a title")
    if not body_md.strip():
        errors.append("the letter's text is empty")
    if errors:
        raise ContentError(errors)
    body = body_md.replace("\r\n", "\n").strip("\n").rstrip() + "\n"
    return PartSpec(
        number=1,
        filename="letter.md",
        title=title,
        summary=summary,
        body_md=body,
        content_hash=_hash(title, summary, body),
    )
