"""Routes: public."""

from fastapi import APIRouter

router = APIRouter()
