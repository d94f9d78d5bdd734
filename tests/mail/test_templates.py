"""The email templates: their environment is strict, and a fault names the file and line."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from newsletter.mail.templates import environment, template_fault


def test_an_undefined_name_is_the_templates_fault_with_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("line one\n{{ missing }}\n")
    with pytest.raises(jinja2.UndefinedError) as caught:
        environment(tmp_path).get_template("a.txt").render({})
    fault = template_fault(caught.value, tmp_path)
    assert fault is not None and fault.startswith(f"{tmp_path / 'a.txt'}:2: undefined variable")


def test_a_syntax_error_names_the_template(tmp_path: Path) -> None:
    (tmp_path / "b.html").write_text("{% if %}\n")
    with pytest.raises(jinja2.TemplateSyntaxError) as caught:
        environment(tmp_path).get_template("b.html")
    assert template_fault(caught.value, tmp_path) == (
        f"{tmp_path / 'b.html'}:1: template syntax error: {caught.value.message}"
    )


def test_an_error_outside_the_templates_is_not_their_fault(tmp_path: Path) -> None:
    try:
        raise ValueError("the provider said no")
    except ValueError as exc:
        assert template_fault(exc, tmp_path) is None
