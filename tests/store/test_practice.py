"""The Settings page's checks: every one-line field refuses every control character at the field,
with the rule the sender uses (core.identity), before anything is saved."""

from __future__ import annotations

import pytest
from control_chars import CONTROL_CHARACTERS, IN_TEXT, NOT_IN_TEXT, name

from newsletter.core.config import Settings
from newsletter.mail import mime
from newsletter.store import practice
from newsletter.store.db import session_scope

# field -> a good value: every one-line field the page has, and its texts
ONE_LINE = {
    "practice_name": "Calm Practice",
    "from_name": "Dr Maya Okafor",
    "from_email": "maya@riverside.example.net",
    "reply_to": "office@riverside.example.net",
    "postal_address": "12 Mill Lane, Hebden Bridge HX7 8AA, UK",
    "signup_heading": "Letters from the counselling room",
    "default_timezone": "Europe/London",
    "poster_line": "Short letters about therapy.",
}
MULTI_LINE = {
    "signup_intro": "Short pieces, one a week.",
    "care_note": "Not advice for you.",
    "sign_off": "With care,\nMaya",
}
ORIGINS = {"signup_origins": "https://www.her.example"}  # one a line, like a text


def test_the_tables_cover_every_field_of_the_page() -> None:
    assert set(ONE_LINE) | set(MULTI_LINE) | set(ORIGINS) == set(practice.BY_NAME)
    assert {f.name for f in practice.FIELDS if f.kind == "text"} == set(MULTI_LINE)


def _placed(good: str, char: str) -> list[str]:
    """The character inside the value, at its end and at its start (never trimmed away)."""
    middle = len(good) // 2
    return [good[:middle] + char + good[middle:], good + char, char + good]


@pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=name)
@pytest.mark.parametrize("field", ONE_LINE)
def test_a_one_line_field_refuses_each_control_character(field: str, char: str) -> None:
    for value in _placed(ONE_LINE[field], char):
        clean, errors = practice.check({**MULTI_LINE, field: value})
        assert set(errors) == {field}, (value, errors)  # refused at that field, only there
        assert field not in clean and set(clean) == set(MULTI_LINE)
        if field != "default_timezone":  # a zone is refused as unknown, by its own rule
            assert name(char) in errors[field]


@pytest.mark.parametrize("char", NOT_IN_TEXT, ids=name)
@pytest.mark.parametrize("field", MULTI_LINE)
def test_a_multi_line_field_refuses_control_characters_but_line_breaks(
    field: str, char: str
) -> None:
    for value in _placed(MULTI_LINE[field], char):
        clean, errors = practice.check({field: value})
        assert set(errors) == {field} and name(char) in errors[field], value
        assert field not in clean


@pytest.mark.parametrize("char", NOT_IN_TEXT, ids=name)
def test_the_origins_list_refuses_control_characters_but_line_breaks(char: str) -> None:
    for value in _placed(ORIGINS["signup_origins"], char):
        _, errors = practice.check({**ORIGINS, "signup_origins": value})
        assert set(errors) == {"signup_origins"} and name(char) in errors["signup_origins"]
    lines = "https://www.her.example/\n\thttp://127.0.0.1:8765"
    assert practice.check({"signup_origins": lines}) == (
        {"signup_origins": "https://www.her.example\nhttp://127.0.0.1:8765"},
        {},
    )


@pytest.mark.parametrize("field", MULTI_LINE)
def test_a_multi_line_field_keeps_lf_and_tab_and_refuses_a_cr(field: str) -> None:
    for char in IN_TEXT:
        value = f"First line{char}second line"
        assert practice.check({field: value}) == ({field: value}, {})
    # a browser's CRLF is LF before it gets here (web/forms.py); a CR that arrives is refused
    clean, errors = practice.check({field: "one\r\ntwo"})
    assert clean == {} and "U+000D" in errors[field]


def test_good_values_pass_and_the_sender_rule_is_the_mail_rule(settings: Settings) -> None:
    clean, errors = practice.check({**ONE_LINE, **MULTI_LINE})
    assert errors == {} and clean == {**ONE_LINE, **MULTI_LINE}
    with session_scope(settings.database_url) as db:
        practice.save(db, clean)
    # what the page accepts, every message can be built from: no practice problem
    assert mime.practice_problem(practice.effective_settings(settings)) is None


@pytest.mark.parametrize(
    "address", ["news @calm.example.org", "a@b", "Maya <maya@calm.example.org>", "a@b.org,c@d.org"]
)
def test_an_address_the_mail_would_refuse_is_refused_at_the_field(address: str) -> None:
    _, errors = practice.check({"from_email": address, "reply_to": address})
    assert set(errors) == {"from_email", "reply_to"}
    with pytest.raises(ValueError, match="not a single email address"):
        mime.address(None, address)


# --- effective_settings: the one function every entry point calls ----------------------------


def _statements(settings: Settings) -> list[str]:
    """Every statement the settings' database runs from now on (appended as they run)."""
    from sqlalchemy import event

    from newsletter.store.db import get_engine

    seen: list[str] = []
    event.listen(
        get_engine(settings.database_url), "before_cursor_execute", lambda *a: seen.append(a[2])
    )
    return seen


def test_effective_settings_lay_the_saved_values_over_the_environment_once_per_window(
    settings: Settings,
) -> None:
    with session_scope(settings.database_url) as db:
        practice.save(db, {"from_name": "Dr Maya Okafor", "postal_address": "12 Mill Lane"})
    seen = _statements(settings)
    first = practice.effective_settings(settings)
    assert (first.from_name, first.postal_address) == ("Dr Maya Okafor", "12 Mill Lane")
    assert first.saved_fields == {"from_name", "postal_address"}
    assert first.environment is settings and settings.from_name != "Dr Maya Okafor"
    reads = len(seen)
    assert reads >= 1
    # a worker asks once per chunk: no statement, the same object, until the window ends
    for _ in range(100):
        assert practice.effective_settings(settings) is first
        assert practice.effective_settings(first) is first  # effective ones given again
    assert len(seen) == reads


def test_effective_settings_made_again_pick_up_a_changed_value(settings: Settings) -> None:
    """Effective settings remember their environment's: made again from them (a service that
    got them from its entry point), a changed saved value is seen, not shadowed as "set"."""
    with session_scope(settings.database_url) as db:
        practice.save(db, {"from_name": "Dr Maya Okafor"})
    first = practice.effective_settings(settings)
    with session_scope(settings.database_url) as db:
        practice.save(db, {"from_name": "Dr Maya Okafor-Reid"})
    assert practice.effective_settings(first).from_name == "Dr Maya Okafor-Reid"
    assert practice.fixed_by_environment(first) == practice.fixed_by_environment(settings)
    # a value given in code to a copy of effective settings wins like a variable, the saved rest stays
    copied = first.model_copy(update={"from_name": "Given In Code"})
    with session_scope(settings.database_url) as db:
        practice.save(db, {"postal_address": "12 Mill Lane"})
    again = practice.effective_settings(copied)
    assert (again.from_name, again.postal_address) == ("Given In Code", "12 Mill Lane")
    assert "from_name" in practice.fixed_by_environment(again)
