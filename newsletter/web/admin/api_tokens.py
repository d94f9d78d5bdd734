"""Settings > API tokens (/admin/settings/tokens): the tokens her other tools use for the JSON API.

The work is services.api_tokens'; a new token is shown once, on the page the form's POST
answers (never in a cookie or a URL), and only its hash is kept. The owner's page: an
assistant gets the owner-only page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from newsletter.services import api_tokens
from newsletter.web.admin.common import form_of, page, redirect, require_owner, settings_of

PATH = "/admin/settings/tokens"
TEMPLATE = "admin/api_tokens.html"
protected = APIRouter(prefix=PATH, dependencies=[Depends(require_owner)])


def _context(request: Request, **extra: Any) -> dict[str, Any]:
    return {
        "nav": "settings",
        "tokens": api_tokens.overview(settings_of(request)),
        "name": "",
        "error": None,
        "new_token": None,
        **extra,
    }


@protected.get("", response_class=HTMLResponse, include_in_schema=False)
def tokens_page(request: Request) -> Response:
    return page(request, TEMPLATE, _context(request))


@protected.post("", include_in_schema=False)
async def add_token(request: Request) -> Response:
    form = await form_of(request)
    name = str(form.get("name") or "")[:200]
    try:
        token = await run_in_threadpool(api_tokens.add, settings_of(request), name)
    except ValueError as exc:
        error = f"Not made: {exc}."
        return page(request, TEMPLATE, _context(request, error=error, name=name), 422)
    return page(request, TEMPLATE, _context(request, new_token=token, name=name.strip()), 201)


@protected.post("/{token_id}/revoke", include_in_schema=False)
async def revoke_token(request: Request, token_id: int = Path(ge=1, le=2**31 - 1)) -> Response:
    await form_of(request)
    if not await run_in_threadpool(api_tokens.revoke, settings_of(request), token_id):
        return redirect(request, PATH, "That token was already revoked.", "error")
    return redirect(request, PATH, "Revoked: a tool using that token is refused from now on.")
