"""Public feeds: the archive as RSS 2.0 and Atom 1.0 (published parts and broadcasts, full text).

Only what the archive shows: parts that went out to someone, and broadcasts the therapist
published in the archive; newest first, at most FEED_SIZE items, each with its full text and
the care note. No tracking: links are the plain archive URLs.
"""

from __future__ import annotations

import datetime as dt
import re
from email.utils import format_datetime
from xml.sax.saxutils import escape as _escape

from fastapi import APIRouter, Request
from starlette.responses import Response

from newsletter.core.config import Settings
from newsletter.mail.markdown import markdown_html
from newsletter.store.archive import Published, published
from newsletter.store.db import session_scope
from newsletter.web.pages import settings_of

router = APIRouter()

FEED_SIZE = 50
RSS_PATH, ATOM_PATH = "/archive/rss.xml", "/archive/atom.xml"
# Characters XML 1.0 does not allow (C0 but tab, LF, CR; surrogates; U+FFFE/U+FFFF) and the ones
# it discourages (DEL, C1): a `\x0b` in the sender name made the whole feed unreadable.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def escape(text: str, entities: dict[str, str] | None = None) -> str:
    """`text` for an XML feed: characters XML can't carry become a space, then &, <, > (and
    `entities`) are escaped. Every value in a feed goes through here."""
    return _escape(NOT_XML.sub(" ", text), entities or {})


def _link(settings: Settings, item: Published) -> str:
    return f"{settings.public_url}/archive/{item.slug}/{item.number}"


def _html(settings: Settings, item: Published) -> str:
    care = escape(settings.care_note)
    return f"{markdown_html(item.body_md)}<hr><p><em>{care}</em></p>"


def _category(item: Published) -> str:
    return "Letters from the practice" if item.broadcast else item.series_title


def rss(settings: Settings, items: list[Published]) -> str:
    site = escape(settings.practice)
    newest = items[0].published if items else dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/">',
        "<channel>",
        f"<title>{site}</title>",
        f"<link>{escape(settings.public_url)}/archive</link>",
        f"<description>Articles and letters from {site}</description>",
        "<language>en</language>",
        f"<lastBuildDate>{format_datetime(newest)}</lastBuildDate>",
        f'<atom:link href="{escape(settings.public_url + RSS_PATH)}" rel="self" '
        'type="application/rss+xml"/>',
    ]
    for item in items:
        link = escape(_link(settings, item))
        lines += [
            "<item>",
            f"<title>{escape(item.title)}</title>",
            f"<link>{link}</link>",
            f'<guid isPermaLink="true">{link}</guid>',
            f"<pubDate>{format_datetime(item.published)}</pubDate>",
            f"<category>{escape(_category(item))}</category>",
            f"<description>{escape(item.summary)}</description>",
            f"<content:encoded>{escape(_html(settings, item))}</content:encoded>",
            "</item>",
        ]
    lines += ["</channel>", "</rss>", ""]
    return "\n".join(lines)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def atom(settings: Settings, items: list[Published]) -> str:
    newest = items[0].published if items else dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    base = escape(settings.public_url)
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">',
        f"<title>{escape(settings.practice)}</title>",
        f"<id>{base}/archive</id>",
        f'<link rel="alternate" type="text/html" href="{base}/archive"/>',
        f'<link rel="self" type="application/atom+xml" href="{base}{ATOM_PATH}"/>',
        f"<updated>{_iso(newest)}</updated>",
        f"<author><name>{escape(settings.from_name)}</name></author>",
    ]
    for item in items:
        link = escape(_link(settings, item))
        lines += [
            "<entry>",
            f"<title>{escape(item.title)}</title>",
            f"<id>{link}</id>",
            f'<link rel="alternate" type="text/html" href="{link}"/>',
            f"<published>{_iso(item.published)}</published>",
            f"<updated>{_iso(item.published)}</updated>",
            f'<category term="{escape(_category(item), {chr(34): "&quot;"})}"/>',
            f"<summary>{escape(item.summary)}</summary>",
            f'<content type="html">{escape(_html(settings, item))}</content>',
            "</entry>",
        ]
    lines += ["</feed>", ""]
    return "\n".join(lines)


def _feed(request: Request, build: str, media: str) -> Response:
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        items = published(session, FEED_SIZE)
    body = rss(settings, items) if build == "rss" else atom(settings, items)
    return Response(
        body,
        media_type=media,
        headers={"cache-control": "public, max-age=600"},
    )


@router.get(RSS_PATH)
def rss_feed(request: Request) -> Response:
    return _feed(request, "rss", "application/rss+xml; charset=utf-8")


@router.get(ATOM_PATH)
def atom_feed(request: Request) -> Response:
    return _feed(request, "atom", "application/atom+xml; charset=utf-8")
