"""The waiting-room poster: the signup address in words and as a QR code (made here by segno, no outside service)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from urllib.parse import urlsplit

import segno

from newsletter.core.config import Settings

# Error correction M (15%): a printed code survives a crease or a smudge, and stays small.
ERROR = "m"
BORDER = 4  # the quiet zone the QR standard asks for, in modules


@dataclass(frozen=True)
class Poster:
    practice: str
    line: str | None  # her one line, when she wrote one
    url: str  # what the code holds: the signup page
    address: str  # the same, in words to type (no scheme, no trailing slash)
    svg: str  # the code as an inline <svg>, sized by the page's CSS


def signup_url(settings: Settings) -> str:
    """The signup page's address (the site's front page)."""
    return settings.public_url.rstrip("/") + "/"


def in_words(url: str) -> str:
    """An address as a person types it: `news.example.org`, `example.org/newsletter`."""
    parts = urlsplit(url)
    return (parts.netloc + parts.path).rstrip("/")


def code(url: str) -> segno.QRCode:
    return segno.make(url, error=ERROR, micro=False)


def svg(url: str, *, inline: bool = True, scale: int = 1) -> str:
    """The code as SVG: inline (no XML declaration, no fixed size) or as a file's text."""
    qr = code(url)
    if inline:
        return str(qr.svg_inline(border=BORDER, omitsize=True, svgclass="qr", lineclass=None))
    out = io.BytesIO()
    qr.save(out, kind="svg", border=BORDER, scale=scale, xmldecl=True)
    return out.getvalue().decode()


def png(url: str, scale: int = 12) -> bytes:
    """The code as a PNG, `scale` pixels a module (12: about 6 cm at 300 dpi for a short URL)."""
    out = io.BytesIO()
    code(url).save(out, kind="png", border=BORDER, scale=scale)
    return out.getvalue()


def poster(settings: Settings) -> Poster:
    url = signup_url(settings)
    return Poster(settings.practice, settings.poster_line, url, in_words(url), svg(url))
