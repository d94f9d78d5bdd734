"""Public pages: the archive of published articles, by series and part, each dated, each with a
subscribe box (to that series from its parts, to every series from the index and letters)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from newsletter.mail.markdown import markdown_html
from newsletter.services import people
from newsletter.store import archive as store_archive
from newsletter.store.db import session_scope
from newsletter.web.pages import render, settings_of
from newsletter.web.public.feeds import ATOM_PATH, RSS_PATH

router = APIRouter()

FEED_LINKS = {"rss_path": RSS_PATH, "atom_path": ATOM_PATH}

LETTERS = {"slug": "letters", "title": "Letters from the practice", "description": ""}


@router.get("/archive")
def archive(request: Request) -> Response:
    """Published parts by series, then the broadcasts published in the archive, newest first."""
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        rows = store_archive.published_by_series(session)
    groups: list[dict[str, Any]] = []
    letters: list[dict[str, Any]] = []
    for row in rows:
        entry = {
            "number": row.number,
            "title": row.title,
            "summary": row.summary,
            "href": f"/archive/{row.slug}/{row.number}",
            "at": row.published,
        }
        if row.broadcast:
            letters.append(entry)
            continue
        if not groups or groups[-1]["slug"] != row.slug:
            groups.append(
                {
                    "slug": row.slug,
                    "title": row.series_title,
                    "description": row.series_description,
                    "parts": [],
                }
            )
        groups[-1]["parts"].append(entry)
    if letters:
        letters.sort(key=lambda p: p["at"], reverse=True)
        groups.append({**LETTERS, "parts": letters, "letters": True})
    return render(
        request,
        "archive.html",
        {"groups": groups, "subscribe_to": _live(settings.database_url, None), **FEED_LINKS},
    )


def _live(database_url: str, slug: str | None) -> list[str]:
    """The series the subscribe box signs up for: `slug` when it is live, else every live one."""
    with session_scope(database_url) as session:
        live = [s.slug for s in people.live_series(session)]
    return [slug] if slug in live else live


@router.get("/archive/{series}/{part}")
def archive_part(request: Request, series: str, part: str) -> Response:
    settings = settings_of(request)
    if not part.isdecimal() or len(part) > 6:
        return render(request, "error.html", _not_found(), 404)
    with session_scope(settings.database_url) as session:
        found = store_archive.published_part(session, series, int(part))
        if found is None:
            return render(request, "error.html", _not_found(), 404)
        numbers = store_archive.published_numbers(session, series)
    context = {
        **FEED_LINKS,
        "series": {"slug": "letters", **LETTERS}
        if found.broadcast
        else {"slug": found.slug, "title": found.series_title},
        "letter": found.broadcast,
        "part": {
            "number": found.number,
            "title": found.title,
            "summary": found.summary,
            "at": found.published,
        },
        "subscribe_to": _live(settings.database_url, None if found.broadcast else found.slug),
        "body_html": markdown_html(found.body_md),
        "corrected": found.corrected,  # "Corrected on …", the practice's date
        "practice_zone": settings.default_timezone,
        "previous": max((n for n in numbers if n < found.number), default=None),
        "next": min((n for n in numbers if n > found.number), default=None),
    }
    return render(request, "archive_part.html", context)


def _not_found() -> dict[str, Any]:
    return {
        "title": "We couldn't find that article",
        "text": "It may not have been published yet. The archive lists every article so far.",
        "status": 404,
        "archive_link": True,
    }
