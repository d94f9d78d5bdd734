"""The render of a message: each email rendered once with personal placeholders, filled per reader."""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import css_inline
import jinja2

from newsletter.core.vocabulary import SERIES_KIND
from newsletter.mail.markdown import markdown_html, markdown_text, smart_text
from newsletter.mail.message import (
    ALREADY_SUBSCRIBED,
    ARTICLE,
    CONFIRMATION,
    WELCOME,
    YOUR_DATA,
    Attachment,
    Message,
)
from newsletter.mail.templates import environment, template_problem

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
        self.env = environment(self.templates_dir)
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
                "signoff": s.signoff,
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

    def load(self, name: str = "article") -> None:
        """Compile `name`'s templates now (a sending process, before its first chunk)."""
        self.env.get_template(f"email/{name}.html")
        self.env.get_template(f"email/{name}.txt")

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
        subject = f"Welcome: your subscription to {self.settings.practice} is confirmed"
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
        subject = f"You are already subscribed to {self.settings.practice}"
        context = self._base(subject, "Nothing has changed; here is your preferences page.", None)
        html_out, text_out = self._render("already_subscribed", context)
        return Message(
            kind=ALREADY_SUBSCRIBED,
            subject=subject,
            html=html_out,
            text=text_out,
            preheader=context["preheader"],
        )

    def your_data(self, record: Mapping[str, Any]) -> Message:
        """What is stored about a reader (their access request): in words in the email, all of
        it as JSON in the attached your-data.json."""
        subject = f"Your data at {self.settings.practice}"
        context = self._base(subject, "Everything we store about you, as you asked.", None)
        context["data"] = record
        html_out, text_out = self._render("your_data", context)
        data_json = json.dumps(record, indent=2, ensure_ascii=False).encode("utf-8")
        return Message(
            kind=YOUR_DATA, subject=subject, html=html_out, text=text_out,
            preheader=context["preheader"],
            attachments=(Attachment("your-data.json", "application/json", data_json),),
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
