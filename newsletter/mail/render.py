"""Email rendering: Jinja (StrictUndefined) + Markdown + css-inline, once per article; placeholders per person."""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import textwrap
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import css_inline
import jinja2
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from markupsafe import Markup

from newsletter.core.vocabulary import SERIES_KIND
from newsletter.mail.message import (
    ALREADY_SUBSCRIBED,
    ARTICLE,
    CONFIRMATION,
    WELCOME,
    YOUR_DATA,
    Message,
)

# Personal values are not rendered per recipient: each message is rendered once with these
# placeholders, and a backend (or SendGrid, as substitutions) swaps in each recipient's values.
GREETING = "%%NL_GREETING%%"  # plain text: "Hi Anna," / "Hello,"
GREETING_HTML = "%%NL_GREETING_HTML%%"  # the same, HTML-escaped
UNSUBSCRIBE_URL = "%%NL_UNSUBSCRIBE_URL%%"
PREFERENCES_URL = "%%NL_PREFERENCES_URL%%"
CONFIRM_URL = "%%NL_CONFIRM_URL%%"


def _one_line(value: str) -> str:
    return " ".join(value.split())


def personal_values(
    *,
    name: str | None,
    unsubscribe_url: str,
    preferences_url: str,
    confirm_url: str = "",
) -> dict[str, str]:
    """Placeholder -> this recipient's value (HTML-escaped for the HTML variants)."""
    clean = _one_line(name or "")
    greeting = f"Hi {clean}," if clean else "Hello,"
    return {
        GREETING: greeting,
        GREETING_HTML: html.escape(greeting),
        UNSUBSCRIBE_URL: unsubscribe_url,
        PREFERENCES_URL: preferences_url,
        CONFIRM_URL: confirm_url,
    }


def personalise(text: str, values: Mapping[str, str]) -> str:
    """Fill the placeholders in one rendered string."""
    for key, value in values.items():
        if key in text:
            text = text.replace(key, value)
    return text


# --- the Renderer: Jinja + Markdown + css-inline, once per article ------------------------

if TYPE_CHECKING:
    from newsletter.content.series import SeriesSpec
    from newsletter.core.config import Settings

TEXT_WIDTH = 72


class SeriesLike(Protocol):
    @property
    def slug(self) -> str: ...
    @property
    def title(self) -> str: ...


class PartLike(Protocol):
    @property
    def number(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def body_md(self) -> str: ...


def markdown() -> MarkdownIt:
    """CommonMark with raw HTML off (it is shown escaped), smart quotes and dashes on."""
    md = MarkdownIt("commonmark", {"html": False, "typographer": True})
    md.enable(["replacements", "smartquotes"])
    return md


_MD = markdown()


def markdown_html(text: str) -> Markup:
    return Markup(_MD.render(text))


def smart_text(text: str) -> Markup:
    """One line of plain text, HTML-escaped, with typographic quotes and dashes."""
    return Markup(_MD.renderInline(text.replace("*", "\\*").replace("_", "\\_")))


# --- Markdown -> plain text ------------------------------------------------------------------


def _inline_text(node: SyntaxTreeNode) -> str:
    out: list[str] = []
    for child in node.children:
        kind = child.type
        if kind in ("text", "code_inline", "html_inline"):
            out.append(child.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind == "link":
            label = _inline_text(child)
            href = str(child.attrs.get("href", ""))
            bare = href.removeprefix("mailto:")
            if not href or label in (href, bare):
                out.append(label.removeprefix("mailto:"))
            else:
                out.append(f"{label} ({bare})")
        elif kind == "image":
            out.append(f"[{_inline_text(child) or 'image'}]")
        else:  # em, strong, inline wrappers
            out.append(_inline_text(child))
    return "".join(out)


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for piece in text.split("\n"):
        lines.extend(
            textwrap.wrap(piece, max(width, 20), break_long_words=False, break_on_hyphens=False)
            or [""]
        )
    return lines


def _blocks(nodes: list[SyntaxTreeNode], width: int, tight: bool = False) -> list[str]:
    lines: list[str] = []
    for node in nodes:
        block = _block(node, width)
        if lines and block and not tight:
            lines.append("")
        lines.extend(block)
    return lines


def _indent(first: str, rest: str, lines: list[str]) -> list[str]:
    return [(first if i == 0 else rest) + line if line else "" for i, line in enumerate(lines)]


def _block(node: SyntaxTreeNode, width: int) -> list[str]:
    kind = node.type
    if kind == "paragraph":
        return _wrap(_inline_text(node.children[0]) if node.children else "", width)
    if kind == "heading":
        title = _inline_text(node.children[0]) if node.children else ""
        return [*_wrap(title, width), ("=" if node.tag == "h1" else "-") * min(len(title), width)]
    if kind in ("bullet_list", "ordered_list"):
        items: list[str] = []
        start = int(node.attrs.get("start", 1) or 1)
        tight = all(
            p.nester_tokens is not None and p.nester_tokens.opening.hidden
            for item in node.children
            for p in item.children
            if p.type == "paragraph"
        )
        for i, item in enumerate(node.children):
            marker = "- " if kind == "bullet_list" else f"{start + i}. "
            body = _blocks(item.children, width - len(marker))
            if items and not tight:
                items.append("")
            items.extend(_indent(marker, " " * len(marker), body or [""]))
        return items
    if kind == "blockquote":
        return [f"> {line}".rstrip() for line in _blocks(node.children, width - 2)]
    if kind == "hr":
        return ["* * *"]
    if kind in ("fence", "code_block"):
        return ["    " + line for line in node.content.rstrip("\n").split("\n")]
    if node.children:
        return _blocks(node.children, width)
    return _wrap(node.content, width) if node.content else []


def markdown_text(text: str, width: int = TEXT_WIDTH) -> str:
    """Markdown as readable plain text: wrapped, links as "label (URL)", lists kept."""
    tree = SyntaxTreeNode(_MD.parse(text))
    return "\n".join(_blocks(tree.children, width)).strip("\n") + "\n"


# --- errors with template file and line --------------------------------------------------------


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


# --- the renderer ------------------------------------------------------------------------------


def _style_after_meta(document: str) -> str:
    """css-inline puts the kept @media rules first in <head>; move them after the <meta> tags
    (the charset declaration belongs in the first bytes of the document)."""
    head_start = document.find("<head>")
    head_end = document.find("</head>")
    if head_start < 0 or head_end < 0:
        return document
    head = document[head_start + len("<head>") : head_end]
    if not head.startswith("<style>"):
        return document
    close = head.find("</style>") + len("</style>")
    head = head[close:] + head[:close]
    return document[: head_start + len("<head>")] + head + document[head_end:]


_shared: dict[str, tuple[tuple[Any, ...], Renderer]] = {}


def shared_renderer(settings: Settings) -> Renderer:
    """One Renderer per settings for a long-running process, so a worker renders, inlines and
    compiles each article once, not once per chunk of 1,000 (that was ~20 ms per chunk).

    A fresh one when a file under the templates folder changed (mtime or size) or the year did
    (the footer shows it): editing a template needs no worker restart.
    """
    folder = Path(settings.templates_dir)
    stats = ((str(p), p.stat()) for p in folder.rglob("*"))
    stamp = (
        _dt.date.today().year,
        *sorted((name, st.st_mtime_ns, st.st_size) for name, st in stats),
    )
    key = settings.model_dump_json()
    found = _shared.get(key)
    if found is not None and found[0] == stamp:
        return found[1]
    if len(_shared) >= 16:
        _shared.clear()
    renderer = Renderer(settings)
    _shared[key] = (stamp, renderer)
    return renderer


class Renderer:
    """Renders article, confirmation and welcome emails once each, with personal placeholders."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings  # effective: the entry point laid the saved values over them
        self.templates_dir = Path(settings.templates_dir)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.templates_dir)),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html",), default_for_string=True
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        self.inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        self._articles: dict[tuple[str, int, str], Message] = {}

    # context shared by every email
    def _base(self, title: str, preheader: str, browser_url: str | None) -> dict[str, Any]:
        s = self.settings
        return {
            "lang": "en",
            "title": title,
            "preheader": preheader,
            "practice": {
                "name": s.practice,
                "address": s.postal_address,
                "reply_to": s.reply_to,
                "public_url": s.public_url,
            },
            "care_note": s.care_note,
            "reply_note": s.reply_note,
            "greeting": GREETING,
            "greeting_html": GREETING_HTML,
            "unsubscribe_url": UNSUBSCRIBE_URL,
            "preferences_url": PREFERENCES_URL,
            "browser_url": browser_url,
            "year": _dt.date.today().year,
        }

    def _render(self, name: str, context: dict[str, Any]) -> tuple[str, str]:
        html_out = self.env.get_template(f"email/{name}.html").render(context)
        text_out = self.env.get_template(f"email/{name}.txt").render(context)
        return _style_after_meta(self.inliner.inline(html_out)), text_out

    def archive_url(self, slug: str, number: int) -> str:
        return f"{self.settings.public_url}/archive/{slug}/{number}"

    def article(self, series: SeriesLike, part: PartLike, part_count: int) -> Message:
        """The article email for everyone: rendered and inlined once per part version."""
        digest = (
            getattr(part, "content_hash", None)
            or hashlib.sha256(f"{part.title}\0{part.summary}\0{part.body_md}".encode()).hexdigest()
        )
        key = (series.slug, part.number, f"{digest}:{part_count}:{series.title}")
        cached = self._articles.get(key)
        if cached is not None:
            return cached
        # a broadcast kept out of the archive has no web copy to link to
        published = getattr(series, "in_archive", True)
        browser_url = self.archive_url(series.slug, part.number) if published else None
        context = self._base(part.title, part.summary, browser_url)
        context.update(
            kind=getattr(series, "kind", SERIES_KIND),
            series_title=series.title,
            series_slug=series.slug,
            part_number=part.number,
            part_count=part_count,
            part_title=part.title,
            part_title_html=smart_text(part.title),
            summary=part.summary,
            summary_html=smart_text(part.summary),
            body_html=markdown_html(part.body_md),
            body_text=markdown_text(part.body_md),
        )
        html_out, text_out = self._render("article", context)
        message = Message(
            kind=ARTICLE,
            subject=part.title,
            html=html_out,
            text=text_out,
            preheader=part.summary,
            series=series.slug,
            part=part.number,
            categories=(series.slug,),
        )
        self._articles[key] = message
        return message

    def confirmation(self) -> Message:
        """The double opt-in email; the link is the CONFIRM_URL placeholder."""
        subject = f"Please confirm your subscription to {self.settings.practice}"
        context = self._base(
            subject, "One click to confirm, and the articles will start arriving.", None
        )
        context["confirm_url"] = CONFIRM_URL
        html_out, text_out = self._render("confirmation", context)
        return Message(
            kind=CONFIRMATION,
            subject=subject,
            html=html_out,
            text=text_out,
            preheader=context["preheader"],
        )

    def welcome(self, first_article: str, series_titles: tuple[str, ...] = ()) -> Message:
        """The welcome email sent on confirmation; first_article says when part 1 arrives."""
        subject = f"Welcome: your subscription to {self.settings.from_name} is confirmed"
        context = self._base(subject, f"Your first article arrives {first_article}.", None)
        context.update(first_article=first_article, series_titles=list(series_titles))
        html_out, text_out = self._render("welcome", context)
        return Message(
            kind=WELCOME,
            subject=subject,
            html=html_out,
            text=text_out,
            preheader=context["preheader"],
        )

    def already_subscribed(self) -> Message:
        """To an active reader whose address was entered on the signup form again: nothing
        changed, and where their preferences are (the page itself says the same as ever)."""
        subject = f"You are already subscribed to {self.settings.from_name}"
        context = self._base(subject, "Nothing has changed; here is your preferences page.", None)
        html_out, text_out = self._render("already_subscribed", context)
        return Message(
            kind=ALREADY_SUBSCRIBED,
            subject=subject,
            html=html_out,
            text=text_out,
            preheader=context["preheader"],
        )

    def your_data(self, data_json: str) -> Message:
        """What is stored about a reader (their access request), as JSON in the email."""
        subject = f"Your data at {self.settings.from_name}"
        context = self._base(subject, "Everything we store about you, as you asked.", None)
        context["data_json"] = data_json
        html_out, text_out = self._render("your_data", context)
        return Message(
            kind=YOUR_DATA, subject=subject, html=html_out, text=text_out,
            preheader=context["preheader"],
        )  # fmt: skip

    def check(self, spec: SeriesSpec) -> list[str]:
        """Problems rendering each part of a series through the email templates."""
        problems: list[str] = []
        for part in spec.parts:
            try:
                self.article(spec, part, len(spec.parts))
            except (jinja2.TemplateError, TypeError, ValueError) as exc:
                problems.append(
                    f"{template_problem(exc, self.templates_dir)} (rendering {part.path})"
                )
        return problems

    def check_templates(self) -> list[str]:
        """Problems rendering the confirmation and welcome emails."""
        problems: list[str] = []
        for build in (
            self.confirmation,
            lambda: self.welcome("Tuesday 3 March at 09:00"),
            self.already_subscribed,
        ):
            try:
                build()
            except (jinja2.TemplateError, TypeError, ValueError) as exc:
                problems.append(template_problem(exc, self.templates_dir))
        return problems
