"""Routes: the public pages (signup, confirm, preferences, unsubscribe, archive, health), one module per area."""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.web.public import (
    archive,
    feeds,
    health,
    my_data,
    preferences,
    received,
    signup,
)

router = APIRouter()
for area in (signup, preferences, my_data, received, feeds, archive, health):
    router.include_router(area.router)
