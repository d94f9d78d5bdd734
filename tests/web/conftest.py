"""Fixtures for the web tests: the app with the shipped series, an API token and a client using it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from newsletter.content import series as content
from newsletter.core.config import Settings
from newsletter.services import auth
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.web.app import create_app


@pytest.fixture
def api_app(settings: Settings) -> FastAPI:
    with session_scope(settings.database_url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
    return create_app(settings)


@pytest.fixture
def token(settings: Settings) -> str:
    with session_scope(settings.database_url) as session:
        return auth.create_token(session, "tests")


@pytest.fixture
def api(api_app: FastAPI, token: str) -> Iterator[TestClient]:
    with TestClient(
        api_app,
        base_url="https://news.example.org",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client
