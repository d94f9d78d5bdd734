"""The one rule for slugs and part file names, and paths proven inside a folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from newsletter.content import names
from newsletter.content import series as content

HOSTILE_NAMES = [
    "/abs/x.pth",
    "../../x.md",
    "../x.md",
    "a/../b.md",
    "x.pth",
    "x.md\n",  # "$" in a regex would accept this one
    "x.md\nslug: evil",
    "x\u2028.md",
    "..\uff0fx.md",  # fullwidth solidus
    "x\uff0emd",  # fullwidth full stop
    "\u2024\u2024/x.md",  # one-dot leaders
    "a..md",
    ".hidden.md",
    "-x.md",
    "Part One.md",
    "a\\..\\b.md",  # Windows separators
    "c:x.md",
    "x#y.md",
    "x" * 300 + ".md",
    "",
    ".md",
]

HOSTILE_SLUGS = [
    "evil #/../../../outside-series",
    "../outside",
    "/tmp/x",
    "a\\b",
    "abc\n",
    "abc\u2028",
    "ab\uff0fc",
    "Abc",
    "a--b",
    "-a",
    "a-",
    "a" * 101,
    "",
    "caf\u00e9",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_part_name_outside_the_rule_is_refused(name: str) -> None:
    problem = names.part_name_problem(name)
    assert problem is not None
    assert "file name" in problem


@pytest.mark.parametrize("name", ["01-a.md", "03-when-work-feels-too-much.md", "a_b.c.md", "9.md"])
def test_ordinary_part_names_pass(name: str) -> None:
    assert names.part_name_problem(name) is None


@pytest.mark.parametrize("slug", HOSTILE_SLUGS)
def test_a_slug_outside_the_rule_is_refused(slug: str) -> None:
    assert not names.is_slug(slug)
    assert names.slug_problem(slug) is not None


def test_the_loader_uses_the_same_rule(tmp_path: Path) -> None:
    """A hand-written series.yaml naming a part outside the rule fails `series validate`."""
    (tmp_path / "series.yaml").write_text(
        'slug: s\ntitle: T\nsend_day: monday\nsend_time: "09:00"\nparts:\n  - Part-1.MD\n'
    )
    (tmp_path / "Part-1.MD").write_text("---\ntitle: A\nsummary: B\n---\nBody.\n")
    assert content.validate(tmp_path) == [
        f"{tmp_path}/series.yaml:6: part 1: expected a file name in this folder, got "
        f"'Part-1.MD': use {names.PART_RULE}"
    ]


def test_inside_resolves_and_refuses_what_leaves_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "schedules"
    (root / "a").mkdir(parents=True)
    assert names.inside(root, "a", "01-x.md") == (root / "a" / "01-x.md").resolve()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    for parts in (("..", "x.md"), ("/etc/passwd",), ("a", "..", "..", "x"), ("link", "x.md"), ()):
        with pytest.raises(names.OutsideError):
            names.inside(root, *parts)
    with pytest.raises(names.OutsideError):
        names.inside(root, "a", "..")  # the folder itself is not inside it
