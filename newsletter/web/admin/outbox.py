"""The outbox viewer (/admin/outbox): the latest emails the embedded `outbox` backend wrote, as sent.

Each .eml file is exactly what SMTP would have carried. The list reads only headers (newest
SCAN files); the search is a POST so an address never sits in a URL or an access log; one email
shows its raw headers, its plain text, and its HTML in a sandboxed frame whose CSP allows no
script at all (the same policy as the preview).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.core.config import Settings
from newsletter.web.admin.common import form_of, page, require_admin, settings_of
from newsletter.web.admin.preview import PAGE_WITH_FRAME_CSP, email_frame

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])
SCAN = 2000  # newest files read for the list and the search
SHOWN = 100
NAME = re.compile(r"^[0-9]{8}T[0-9]{6}\.[0-9]{6}Z-[A-Za-z0-9_-]{1,80}\.eml$")


@dataclass(frozen=True)
class Entry:
    name: str
    to: str
    subject: str
    date: dt.datetime | None  # from the Date header


def _date(value: str) -> dt.datetime | None:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def _folder(settings: Settings) -> Path:
    return Path(settings.outbox_dir)


def latest(settings: Settings, query: str = "") -> tuple[list[Entry], int]:
    """(the newest emails, up to SHOWN, whose To holds `query`; how many files were looked at)."""
    folder = _folder(settings)
    if not folder.is_dir():
        return [], 0
    names = sorted((p.name for p in folder.glob("*.eml") if NAME.match(p.name)), reverse=True)
    parser = BytesHeaderParser(policy=email.policy.default)
    wanted = query.strip().lower()
    found: list[Entry] = []
    for name in names[:SCAN]:
        try:
            with open(folder / name, "rb") as fh:
                headers = parser.parse(fh)
        except OSError:
            continue
        to = str(headers.get("To", ""))
        if wanted and wanted not in to.lower():
            continue
        subject = str(headers.get("Subject", ""))
        found.append(Entry(name, to, subject, _date(str(headers.get("Date", "")))))
        if len(found) >= SHOWN:
            break
    return found, min(len(names), SCAN)


def _read(settings: Settings, name: str) -> tuple[EmailMessage, bytes]:
    if not NAME.match(name):
        raise HTTPException(404, "no such email")
    path = _folder(settings) / name
    try:
        raw = path.read_bytes()
    except OSError:
        raise HTTPException(404, "no such email") from None
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message, raw


def _list(request: Request, query: str) -> Response:
    settings = settings_of(request)
    entries, scanned = latest(settings, query)
    return page(
        request,
        "admin/outbox.html",
        {
            "nav": "outbox",
            "entries": entries,
            "scanned": scanned,
            "query": query,
            "backend": settings.mail_backend,
            "folder": str(_folder(settings)),
        },
    )


@protected.get("/outbox", response_class=HTMLResponse, include_in_schema=False)
def outbox_page(request: Request) -> Response:
    return _list(request, "")


@protected.post("/outbox", response_class=HTMLResponse, include_in_schema=False)
async def outbox_search(request: Request) -> Response:
    form = await form_of(request)
    return _list(request, str(form.get("q") or "")[:320])


@protected.get("/outbox/{name}", response_class=HTMLResponse, include_in_schema=False)
def outbox_email(request: Request, name: str) -> Response:
    message, raw = _read(settings_of(request), name)
    header_end = raw.find(b"\r\n\r\n")
    header_end = header_end if header_end >= 0 else raw.find(b"\n\n")
    raw_headers = raw[: header_end if header_end >= 0 else len(raw)].decode("utf-8", "replace")
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    response = page(
        request,
        "admin/outbox_email.html",
        {
            "nav": "outbox",
            "name": name,
            "subject": str(message.get("Subject", "")),
            "to": str(message.get("To", "")),
            "raw_headers": raw_headers,
            "text": text.get_content() if text is not None else "",
            "has_html": html is not None,
        },
    )
    response.headers["content-security-policy"] = PAGE_WITH_FRAME_CSP
    return response


@protected.get("/outbox/{name}/email.html", response_class=HTMLResponse, include_in_schema=False)
def outbox_email_html(request: Request, name: str) -> Response:
    message, _raw = _read(settings_of(request), name)
    html = message.get_body(preferencelist=("html",))
    if html is None:
        raise HTTPException(404, "no HTML part")
    return email_frame(html.get_content())
