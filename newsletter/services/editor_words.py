"""The validator's "file:line: problem" messages, tied to the editor's form fields in the writer's words.

The editor writes its files into a staging folder and runs the same validator as
`newsletter series validate`; each message names a file and a line there. The line of
series.yaml says which setting it is about, the part file which part, and the line in the
front matter (2: title, 3: summary; later lines: the article) which field. The message is
then said as a writer would say it; one with no rewording keeps the validator's words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from newsletter.content import series as content
from newsletter.content.writing import SeriesText

# Form fields: series settings by key; each part's as part-N-title / -summary / -body.
SERIES_FIELDS = ("slug", "title", "description", "send_day", "send_time", "cadence", "parts")
PART_FIELD_BY_LINE = {2: "title", 3: "summary"}

EMPTY = {
    "slug": "Choose a short name for the series (lower-case words and hyphens).",
    "title": "Give the series a title: readers see it above every part.",
    "description": "Write a sentence or two about the series, or leave it out.",
    "part-title": "Write a subject line: it is the first thing readers see in their inbox.",
    "part-summary": (
        "Write an inbox preview line: the sentence most inboxes show after the subject."
    ),
}
REWORDINGS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"is longer than (\d+) characters"), "Keep this to {0} characters or fewer."),
    (
        re.compile(r"control character \((U\+[0-9A-F]{4})\)"),
        "There is an invisible character ({0}) here, usually pasted in from another program; "
        "delete the text around it and type it again.",
    ),
    (re.compile(r"the article body is empty"), "Write the article: this part has no text yet."),
    (
        re.compile(r"slug .* must be lower-case"),
        "Use lower-case letters, digits and single hyphens, like anxiety-at-work.",
    ),
    (re.compile(r"parts must be a list"), "Add at least one part."),
    (re.compile(r"send_time .* must be"), 'Choose a time like "09:00" (24-hour clock).'),
    (re.compile(r"send_day .* is not a weekday"), "Choose the day of the week it goes out."),
    (re.compile(r"cadence .* must be one of (.*)"), "Choose how often it goes out: {0}."),
)


# What the writer calls each one-line field, for a message that must name it.
LABELS = {
    "slug": "The short name",
    "title": "The title",
    "description": "The description",
    "send_time": "The send time",
    "cadence": "How often it goes out",
    "part-title": "The subject line",
    "part-summary": "The inbox preview line",
}


@dataclass(frozen=True)
class Problem:
    """One thing to fix: the form field it belongs to ("" for the whole form) and what to do."""

    field: str
    message: str


def _series_lines(text: str) -> dict[int, str]:
    """line number -> the field it belongs to, in a series.yaml the editor wrote."""
    lines: dict[int, str] = {}
    key, item = "", 0
    for number, line in enumerate(text.split("\n"), start=1):
        if line and not line.startswith(" "):
            key = line.split(":", 1)[0]
        if key == "parts" and line.startswith("  - "):
            item += 1
            lines[number] = f"part-{item}"
        else:
            lines[number] = key if key in SERIES_FIELDS else ""
    return lines


def _reword(field: str, message: str) -> str:
    kind = _kind(field)
    if "must be non-empty text" in message and kind in EMPTY:
        return EMPTY[kind]
    for pattern, words in REWORDINGS:
        found = pattern.search(message)
        if found:
            return words.format(*found.groups())
    return message[:1].upper() + message[1:]


def _kind(field: str) -> str:
    return "part-" + field.rsplit("-", 1)[-1] if field.startswith("part-") else field


def worded(field: str, message: str) -> Problem:
    """A validator-style message ("slug 'x' must be …") about `field`, in the writer's words."""
    return Problem(field, _reword(field, message))


def invisible(field: str, code: str) -> Problem:
    """`field` holds a character no file may hold (a control character, U+2028 …)."""
    label = LABELS.get(_kind(field), "This field")
    if field.startswith("part-"):
        label += f" of part {field.split('-')[1]}"
    return Problem(
        field,
        f"{label} has an invisible character or line break ({code}) in it, usually pasted "
        "in from another program; delete the text around it and type it again.",
    )


def problems_for(errors: list[str], stage: Path, text: SeriesText) -> list[Problem]:
    """Tie each validator message about files in `stage` to a form field, in plain words."""
    yaml_path = stage / content.SERIES_FILE
    series_lines = _series_lines(yaml_path.read_text("utf-8")) if yaml_path.exists() else {}
    part_index = {p.filename: i for i, p in enumerate(text.parts, start=1)}
    problems: list[Problem] = []
    for error in errors:
        problems.append(_problem(error, stage, series_lines, part_index))
    return problems


def _problem(
    error: str, stage: Path, series_lines: dict[int, str], part_index: dict[str, int]
) -> Problem:
    rendering = re.search(r"\(rendering (.+)\)$", error)
    if rendering:  # the email templates failed on this part
        number = part_index.get(Path(rendering.group(1)).name)
        where = f"part-{number}-body" if number else ""
        return Problem(where, "The email could not be made from this part: " + error)
    prefix = f"{stage}/"
    if not error.startswith(prefix):
        return Problem("", error.replace(str(stage), "the series folder"))
    name, line_text, message = ([*error[len(prefix) :].split(":", 2), "", ""])[:3]
    message = message.strip()
    line = int(line_text) if line_text.isdecimal() else 1
    if name == content.SERIES_FILE:
        field = series_lines.get(line, "")
    elif name in part_index:
        kind = PART_FIELD_BY_LINE.get(line, "body" if line > 4 else "")
        field = f"part-{part_index[name]}" + (f"-{kind}" if kind else "")
    else:
        field = ""
    return Problem(field, _reword(field, message))
