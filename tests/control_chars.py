"""Control characters a one-line field must refuse (C0, DEL, C1, the Unicode line separators),
named for test ids; multi-line texts accept LF and tab of these."""

from __future__ import annotations

CONTROL_CHARACTERS = (
    "\x00", "\x01", "\t", "\n", "\x0b", "\x0c", "\r", "\x1b", "\x1f",  # C0
    "\x7f",  # DEL
    "\x80", "\x85", "\x9f",  # C1 (U+0085 is NEL, a line break to some readers)
    "\u2028", "\u2029",  # line and paragraph separators
)  # fmt: skip
IN_TEXT = ("\n", "\t")  # what a multi-line text may hold
NOT_IN_TEXT = tuple(c for c in CONTROL_CHARACTERS if c not in IN_TEXT)


def name(char: str) -> str:
    """`U+000B`: how the refusal names the character, and the test id."""
    return f"U+{ord(char):04X}"
