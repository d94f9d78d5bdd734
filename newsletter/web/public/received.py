"""Public page: the articles a reader has received, and "send me this one again" (the use case
is services/received.py; the page is the same whether or not a copy went out)."""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from newsletter.services import received as service
from newsletter.web.csrf import verify_csrf
from newsletter.web.pages import render, settings_of
from newsletter.web.public.common import (
    LinkProblem,
    address_allowed,
    link_problem_page,
    read_public_id,
)

router = APIRouter()


@router.get("/preferences/{token}/received")
def received_page(request: Request, token: str) -> Response:
    settings = settings_of(request)
    try:
        items = service.received(settings, read_public_id(request, "preferences", token))
    except LinkProblem as problem:
        return link_problem_page(request, problem)
    except service.NoReader:
        return link_problem_page(request, LinkProblem(404))
    context = {"items": items, "token": token, "sent": False}
    return render(request, "received.html", context, no_store=True)


@router.post("/preferences/{token}/received")
def send_again(
    request: Request,
    token: str,
    part: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    settings = settings_of(request)
    verify_csrf(request, csrf_token)
    try:
        asked = service.ask_again(settings, read_public_id(request, "preferences", token), part)
    except LinkProblem as problem:
        return link_problem_page(request, problem)
    except service.NoReader:
        return link_problem_page(request, LinkProblem(404))
    context = {"items": asked.items, "token": token, "sent": asked.known}
    response = render(request, "received.html", context, 200 if asked.known else 400, no_store=True)
    if asked.copy is not None:
        allowed = functools.partial(address_allowed, request, settings)
        response.background = BackgroundTask(service.send_copy, settings, asked.copy, allowed)
    return response
