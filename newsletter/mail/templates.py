"""The email templates: their Jinja environment, and their faults as "file:line: message"."""

from __future__ import annotations

import traceback
from pathlib import Path

import jinja2


def environment(templates_dir: Path) -> jinja2.Environment:
    """The templates folder's Jinja environment: StrictUndefined, HTML autoescaped, no reload."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def _template_frame(exc: Exception, templates_dir: Path) -> tuple[str, int] | None:
    """The innermost (template file, line) that `exc` passed through, or None."""
    root = str(templates_dir.resolve())
    found = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename.startswith(root) or filename.startswith(str(templates_dir)):
            found = (filename, lineno)
    return found


def template_fault(exc: Exception, templates_dir: Path) -> str | None:
    """`template_problem` when `exc` is the email templates' fault (a Jinja error, or an error
    raised while running a template: the practice's to fix, never a reader's); else None."""
    if isinstance(exc, jinja2.TemplateError) or _template_frame(exc, templates_dir) is not None:
        return template_problem(exc, templates_dir)
    return None


def template_problem(exc: Exception, templates_dir: Path) -> str:
    """ "file:line: message" for a Jinja error, pointing into the template that caused it."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = exc.filename or exc.name or "?"
        return f"{where}:{exc.lineno}: template syntax error: {exc.message}"
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"{templates_dir / str(exc.name)}:1: template not found"
    found = _template_frame(exc, templates_dir)
    message = exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else str(exc)
    if isinstance(exc, jinja2.UndefinedError):
        message = f"undefined variable: {message} (StrictUndefined: every name must be defined)"
    if found is None:
        return f"{templates_dir}:1: {message}"
    return f"{found[0]}:{found[1]}: {message}"
