"""PostgreSQL array parameters written as their text literal ('{1,2,NULL}'), for CAST(:p AS t[]).

psycopg adapts a Python list in Python, element by element (its list dumper): 0.7-1.1 ms of
CPU per 1,000 ints, 1.3-1.6 ms per 1,000 strings, 3.5-4 ms per 1,000 times, and a chunk sent
passes about fifteen such arrays (the claim round, the hand-over, the outcomes, the enrollment
moves). The literal is one str.join: 0.09 ms per 1,000 ints. PostgreSQL parses the same text
either way (its CPU per call measured equal; round 3d in benchmarks/README.md).

Every element is made from a value of the array's own type, so nothing from a value can leave
its element: ints are written by int's repr (anything else raises TypeError), text is quoted
with its backslashes and double quotes escaped, times are UTC without a zone (as UTCDateTime
stores them: an aware time is converted first, because a zone in the text of a `timestamp`
element would be dropped, not applied). None is NULL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Integer, String, any_, bindparam, cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import NullType, TypeEngine

NULL = "NULL"


def ints(values: Iterable[int | None]) -> str:
    """'{1,2,NULL}': an integer[] literal."""
    values = list(values)
    try:
        return "{" + ",".join(map(int.__repr__, values)) + "}"
    except TypeError:  # a None among them (or a value that is not an int: raised again below)
        return "{" + ",".join(NULL if v is None else int.__repr__(v) for v in values) + "}"


def _text(value: str | None) -> str:
    if value is None:
        return NULL
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def texts(values: Iterable[str | None]) -> str:
    """'{"a","b \\"c\\"",NULL}': a text (varchar) array literal, every element quoted."""
    return "{" + ",".join(map(_text, values)) + "}"


def _stamp(value: dt.datetime | None) -> str:
    if value is None:
        return NULL
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat()  # 2027-03-02T09:00:00[.ffffff]: no character the literal quotes


def stamps(values: Iterable[dt.datetime | None]) -> str:
    """'{2027-03-02T09:00:00,NULL}': a timestamp (without time zone) array literal, in UTC.
    Each distinct time is written once: a chunk's readers share a handful (their slot, a week
    later), and converting an aware time costs more than looking it up."""
    values = list(values)
    written = {v: _stamp(v) for v in set(values)}
    return "{" + ",".join(map(written.__getitem__, values)) + "}"


# A column's type -> the literal of its values (what `among` compares a column with).
BY_TYPE: dict[type[TypeEngine[Any]], Callable[[Iterable[Any]], str]] = {
    Integer: ints,
    String: texts,
}


def any_of(column: Any, values: Iterable[Any]) -> Any:
    """`column = ANY(CAST(:literal AS type[]))`: one parameter for the whole list. The parameter
    has no type of its own (psycopg sends a str as `unknown`), so PostgreSQL reads it as the
    array itself; typed as text, the cast was an expression the planner could not see through:
    a sequential scan comparing every row with the array (184 ms a chunk at 5,000 readers)."""
    kind = column.type
    write = next((f for t, f in BY_TYPE.items() if isinstance(kind, t)), None)
    if write is None:
        raise TypeError(f"no array literal for {column.key}'s type {kind!r}")
    return column == any_(cast(bindparam(None, write(values), type_=NullType()), ARRAY(kind)))
