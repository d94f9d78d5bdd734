"""wait_for: poll a condition with a deadline that guards against hanging, never a timing test."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    check: Callable[[], object], what: str, timeout: float = 90, every: float = 0.2
) -> None:
    """Poll until `check()` holds; fail naming `what` if it never does within `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(every)
