"""Routes: admin."""

from fastapi import APIRouter

router = APIRouter()
