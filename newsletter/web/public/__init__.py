"""Routes: the public pages (signup, confirm, preferences, unsubscribe, archive, health), one module per area."""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.web.public import (
    archive,
    embed,
    feeds,
    health,
    my_data,
    preferences,
    received,
    signup,
)

router = APIRouter()
for area in (signup, embed, preferences, my_data, received, feeds, archive, health):
    router.include_router(area.router)
