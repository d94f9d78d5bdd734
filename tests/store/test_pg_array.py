"""store.pg_array: array literals PostgreSQL reads back as the values they were made from."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text

from newsletter.store import pg_array
from newsletter.store.models import Delivery, Suppression

AWKWARD = ['plain', 'a "quoted" word', "back\\slash", "comma, brace } {", " spaced ", "", "NULL",
           "null", "élan ✓", "new\nline", "tab\there", None]  # fmt: skip
ZONE = dt.timezone(dt.timedelta(hours=-5))


@pytest.fixture
def engine(postgres_url: str | None) -> Iterator[Engine]:
    if postgres_url is None:
        pytest.skip("arrays are PostgreSQL's; TEST_DATABASE_URL is not set")
    made = create_engine(postgres_url)
    yield made
    made.dispose()


def read(engine: Engine, literal: str, kind: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT CAST(:a AS {kind}[])"), {"a": literal}).scalar()


def test_integers_and_nulls_come_back_as_they_went(engine: Engine) -> None:
    values = [0, 1, -7, 2_147_483_647, None, 42]
    assert read(engine, pg_array.ints(values), "integer") == values
    assert read(engine, pg_array.ints([]), "integer") == []


def test_every_awkward_text_is_one_element_and_unchanged(engine: Engine) -> None:
    assert read(engine, pg_array.texts(AWKWARD), "varchar") == AWKWARD


def test_times_are_stored_in_utc_whatever_zone_they_came_in(engine: Engine) -> None:
    naive = dt.datetime(2027, 3, 2, 9, 0)
    micro = dt.datetime(2027, 3, 2, 9, 0, 0, 123456)
    eastern = dt.datetime(2027, 3, 2, 4, 0, tzinfo=ZONE)  # 09:00 UTC
    got = read(engine, pg_array.stamps([naive, micro, eastern, None]), "timestamp")
    assert got == [naive, micro, naive, None]


def test_a_value_that_is_not_an_int_is_refused_not_written() -> None:
    with pytest.raises(TypeError):
        pg_array.ints([1, "2,3"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        pg_array.ints([None, "4"])  # type: ignore[list-item]
    with pytest.raises(AttributeError):
        pg_array.texts(["a", 5])  # type: ignore[list-item]


def test_any_of_compares_a_column_with_the_whole_list(engine: Engine) -> None:
    ids = select(Delivery.id).where(pg_array.any_of(Delivery.id, [3, 5]))
    hashes = select(Suppression.id).where(pg_array.any_of(Suppression.email_hash, AWKWARD))
    for statement in (ids, hashes):
        sql = str(statement.compile(engine))
        assert "ANY (CAST(" in sql and sql.count("%(") == 1  # one parameter, whatever the length
        # untyped, so PostgreSQL reads it as the array: a `::VARCHAR` made the cast an
        # expression the planner could not see through (a sequential scan, 184 ms a chunk)
        assert "::" not in sql
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT x FROM unnest(ARRAY[1, 2, 3, 5, 8]) AS x WHERE x = ANY(CAST(:a AS int[]))"
            ),
            {"a": pg_array.ints([3, 5, 13])},
        ).scalars()
        assert list(found) == [3, 5]


def test_any_of_names_a_column_whose_type_it_cannot_write() -> None:
    with pytest.raises(TypeError, match="created_at"):
        pg_array.any_of(Delivery.created_at, [dt.datetime(2027, 3, 2)])
