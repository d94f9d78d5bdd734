"""Public pages: the archive of published articles, by series and part."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from markdown_it import MarkdownIt
from starlette.responses import Response

from newsletter.services import published
from newsletter.store.db import session_scope
from newsletter.web.pages import render, settings_of
from newsletter.web.public.feeds import ATOM_PATH, RSS_PATH

router = APIRouter()

FEED_LINKS = {"rss_path": RSS_PATH, "atom_path": ATOM_PATH}

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": True})


LETTERS = {"slug": "letters", "title": "Letters from the practice", "description": ""}


@router.get("/archive")
def archive(request: Request) -> Response:
    """Published parts by series, then the broadcasts published in the archive, newest first."""
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        entries = published.in_queue_order(session)
    groups: list[dict[str, Any]] = []
    letters: list[dict[str, Any]] = []
    for e in entries:
        href = f"/archive/{e.slug}/{e.number}"
        if e.broadcast:
            letters.append(
                {
                    "number": e.number,
                    "title": e.title,
                    "summary": e.summary,
                    "href": href,
                    "at": e.published,
                }
            )
            continue
        if not groups or groups[-1]["slug"] != e.slug:
            groups.append(
                {
                    "slug": e.slug,
                    "title": e.series_title,
                    "description": e.series_description,
                    "parts": [],
                }
            )
        groups[-1]["parts"].append(
            {"number": e.number, "title": e.title, "summary": e.summary, "href": href}
        )
    if letters:
        letters.sort(key=lambda p: p["at"], reverse=True)
        groups.append({**LETTERS, "parts": letters, "letters": True})
    return render(request, "archive.html", {"groups": groups, **FEED_LINKS})


@router.get("/archive/{series}/{part}")
def archive_part(request: Request, series: str, part: str) -> Response:
    settings = settings_of(request)
    if not part.isdecimal() or len(part) > 6:
        return render(request, "error.html", _not_found(), 404)
    with session_scope(settings.database_url) as session:
        found = published.article(session, series, int(part))
    if found is None:
        return render(request, "error.html", _not_found(), 404)
    p = found.entry
    context = {
        **FEED_LINKS,
        "series": {"slug": "letters", **LETTERS}
        if p.broadcast
        else {"slug": p.slug, "title": p.series_title},
        "letter": p.broadcast,
        "part": {"number": p.number, "title": p.title, "summary": p.summary},
        "body_html": _markdown.render(p.body_md),
        "previous": found.previous,
        "next": found.next,
    }
    return render(request, "archive_part.html", context)


def _not_found() -> dict[str, Any]:
    return {
        "title": "We couldn't find that article",
        "text": "It may not have been published yet. The archive lists every article so far.",
        "status": 404,
        "archive_link": True,
    }
