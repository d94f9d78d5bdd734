"""Public pages: the archive of published articles, by series and part."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from markdown_it import MarkdownIt
from sqlalchemy import select
from starlette.responses import Response

from newsletter.store.db import session_scope
from newsletter.store.models import BROADCAST_KIND, Part, Series
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
        rows = session.execute(
            select(Series, Part)
            .join(Part, Part.series_id == Series.id)
            .where(Part.first_sent_at.is_not(None), Series.in_archive.is_(True))
            .order_by(Series.order, Series.id, Part.number)
        ).all()
        groups: list[dict[str, Any]] = []
        letters: list[dict[str, Any]] = []
        for series, part in rows:
            if series.kind == BROADCAST_KIND:
                letters.append(
                    {
                        "number": part.number,
                        "title": part.title,
                        "summary": part.summary,
                        "href": f"/archive/{series.slug}/{part.number}",
                        "at": part.first_sent_at,
                    }
                )
                continue
            if not groups or groups[-1]["slug"] != series.slug:
                groups.append(
                    {
                        "slug": series.slug,
                        "title": series.title,
                        "description": series.description,
                        "parts": [],
                    }
                )
            groups[-1]["parts"].append(
                {
                    "number": part.number,
                    "title": part.title,
                    "summary": part.summary,
                    "href": f"/archive/{series.slug}/{part.number}",
                }
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
        row = session.execute(
            select(Series, Part)
            .join(Part, Part.series_id == Series.id)
            .where(Series.slug == series, Part.number == int(part))
            .where(Part.first_sent_at.is_not(None), Series.in_archive.is_(True))
        ).first()
        if row is None:
            return render(request, "error.html", _not_found(), 404)
        s, p = row
        numbers = list(
            session.scalars(
                select(Part.number)
                .where(Part.series_id == s.id, Part.first_sent_at.is_not(None))
                .order_by(Part.number)
            )
        )
        letter = s.kind == BROADCAST_KIND
        context = {
            **FEED_LINKS,
            "series": {"slug": "letters", **LETTERS}
            if letter
            else {"slug": s.slug, "title": s.title},
            "letter": letter,
            "part": {"number": p.number, "title": p.title, "summary": p.summary},
            "body_html": _markdown.render(p.body_md),
            "previous": max((n for n in numbers if n < p.number), default=None),
            "next": min((n for n in numbers if n > p.number), default=None),
        }
    return render(request, "archive_part.html", context)


def _not_found() -> dict[str, Any]:
    return {
        "title": "We couldn't find that article",
        "text": "It may not have been published yet. The archive lists every article so far.",
        "status": 404,
        "archive_link": True,
    }
