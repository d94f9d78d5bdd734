"""Routes: the therapist's admin pages under /admin, one module per area."""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.web.admin import (
    about,
    accounts,
    api_tokens,
    broadcasts,
    calendar,
    dashboard,
    editor,
    login,
    outbox,
    practice,
    preview,
    provider,
    series,
    setup,
    subscribers,
    transfer,
    webhooks_out,
    website,
)

# Login first (no session needed), then everything else behind require_admin.
router = APIRouter()
router.include_router(login.public)
router.include_router(setup.public)  # first run, invitations, resets: reached by a link
router.include_router(accounts.owner)  # the owner's pages (require_owner)
for area in (
    login,
    dashboard,
    series,
    editor,
    preview,
    subscribers,
    transfer,
    practice,
    provider,
    calendar,
    outbox,
    broadcasts,
    website,
    accounts,
    about,
    webhooks_out,
    api_tokens,
):
    router.include_router(area.protected)
