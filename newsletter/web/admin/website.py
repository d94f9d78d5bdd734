"""Her website and waiting room (/admin/website): the signup form snippet, its iframe version, and the QR poster."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.core.origins import listed
from newsletter.services import poster
from newsletter.web.admin.common import page, require_admin, settings_of
from newsletter.web.public.signup import HONEYPOT

protected = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

# A plain form (no script: any site builder takes it). The honeypot is hidden by an inline style,
# which is her page's business; people never see it, bots fill it in.
SNIPPET = """<form method="post" action="{base}/signup">
  <label for="nl-email">Email address</label>
  <input id="nl-email" name="email" type="email" autocomplete="email" required>
  <label for="nl-name">First name (optional)</label>
  <input id="nl-name" name="name" type="text" autocomplete="given-name">
  <div style="position:absolute;left:-10000px" aria-hidden="true">
    <input name="{honeypot}" type="text" tabindex="-1" autocomplete="off">
  </div>
  <button type="submit">Subscribe</button>
</form>"""

IFRAME = (
    '<iframe src="{base}/signup/embed" title="Subscribe to {practice}" loading="lazy" '
    'style="width:100%;max-width:32rem;height:30rem;border:0"></iframe>'
)


def _base(request: Request) -> str:
    return settings_of(request).public_url.rstrip("/")


def snippet(base: str) -> str:
    """The copy-paste form for her site, posting to this site's /signup."""
    return SNIPPET.format(base=base, honeypot=HONEYPOT)


def iframe(base: str, practice: str) -> str:
    return IFRAME.format(base=base, practice=practice.replace('"', "&quot;"))


@protected.get("/website", response_class=HTMLResponse, include_in_schema=False)
def website_page(request: Request) -> Response:
    settings = settings_of(request)
    base = _base(request)
    context: dict[str, Any] = {
        "nav": "website",
        "sites": listed(settings.signup_origins),
        "snippet": snippet(base),
        "iframe": iframe(base, settings.practice),
    }
    return page(request, "admin/website.html", context)


@protected.get("/poster", response_class=HTMLResponse, include_in_schema=False)
def poster_page(request: Request, paper: str = "letter") -> Response:
    """The printable poster; `paper` (letter or a4) sets the page size the print dialog gets."""
    context = {
        "poster": poster.poster(settings_of(request)),
        "paper": "a4" if paper == "a4" else "letter",
    }
    return page(request, "admin/poster.html", context)


@protected.get("/poster/qr.svg", include_in_schema=False)
def qr_svg(request: Request) -> Response:
    body = poster.svg(poster.signup_url(settings_of(request)), inline=False, scale=10)
    return Response(body, media_type="image/svg+xml", headers=_download("signup-qr.svg"))


@protected.get("/poster/qr.png", include_in_schema=False)
def qr_png(request: Request) -> Response:
    body = poster.png(poster.signup_url(settings_of(request)))
    return Response(body, media_type="image/png", headers=_download("signup-qr.png"))


def _download(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
