"""Routes: the therapist's admin pages under /admin, one module per area."""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.web.admin import (
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
    subscribers,
    transfer,
    webhooks_out,
)

# Login first (no session needed), then everything else behind require_admin.
router = APIRouter()
router.include_router(login.public)
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
    webhooks_out,
):
    router.include_router(area.protected)
