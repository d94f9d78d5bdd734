"""Signing up from her own website: the cross-site /signup post, its iframe form, and the page after.

Her sites (Settings: "Your websites") can't hold this site's CSRF cookie, so /signup checks
instead that the post came from one of them (Origin, else Referer), drops a filled honeypot
silently and counts the per-IP and per-address limits as /subscribe does; double opt-in is the
same. Only these pages may be framed, and only by her listed sites; every other page keeps CSRF
and frame-ancestors 'none' (web/security.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from newsletter.core.origins import listed, of_url
from newsletter.services import signup
from newsletter.web.csrf import posted_from
from newsletter.web.pages import render, settings_of
from newsletter.web.public.signup import HONEYPOT, take_signup
from newsletter.web.security import allow_framing, hit_rate_limit

router = APIRouter()


def her_sites(request: Request) -> tuple[str, ...]:
    """The websites she listed in Settings."""
    return listed(settings_of(request).signup_origins)


def _own_origin(request: Request) -> str:
    return of_url(settings_of(request).public_url) or ""


def _sent_page(
    request: Request, back: str | None, cooldown: dict[str, str] | None = None
) -> Response:
    return render(request, "embed_sent.html", {"back": back, "cooldown": cooldown})


@router.get("/signup/embed")
def embedded_form(request: Request) -> Response:
    """The form for an iframe on her site (framed by her listed sites only)."""
    sites = her_sites(request)
    allow_framing(request, sites)
    return render(
        request,
        "embed_form.html",
        {"honeypot": HONEYPOT, "consent_text": signup.CONSENT_TEXT, "errors": {}, "values": {}},
    )


@router.post("/signup")
def signup_from_her_site(
    request: Request,
    email: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    series: Annotated[list[str] | None, Form()] = None,
    website: Annotated[str, Form()] = "",
) -> Response:
    sites = her_sites(request)
    own = _own_origin(request)
    source = posted_from(request, (*sites, own))  # her sites, or our own iframe form
    allow_framing(request, sites)  # the answer shows inside her iframe too
    back = source if source != own else (sites[0] if sites else None)
    hit_rate_limit(request, "subscribe")  # the same per-IP count as /subscribe
    if website.strip():  # honeypot: look exactly like success, do nothing
        return _sent_page(request, back)

    def invalid(errors: dict[str, str]) -> Response:
        values = {"email": email, "name": name}
        context = {
            "honeypot": HONEYPOT,
            "consent_text": signup.CONSENT_TEXT,
            "errors": errors,
            "values": values,
        }
        return render(request, "embed_form.html", context, 400)

    return take_signup(
        request,
        email,
        name,
        timezone,
        series,
        f"website {source}",
        done=lambda cooldown: _sent_page(request, back, cooldown),
        invalid=invalid,
    )
