"""The contract files the tests use are the team's shared ones, unchanged."""

from __future__ import annotations

import pytest
from paths import CONTRACTS, SHARED

NAMES = ["sendgrid-mail-send.schema.json", "sendgrid-event-webhook.example.json"]


@pytest.mark.parametrize("name", NAMES)
def test_copy_matches_the_shared_contract(name: str) -> None:
    original = SHARED / "contracts" / name
    if not original.exists():
        pytest.skip(f"{original} is not beside this checkout; the copy in tests/contracts is used")
    assert (CONTRACTS / name).read_bytes() == original.read_bytes()
