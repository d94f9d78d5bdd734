"""core.heap.loading: no collections while a command loads its modules, the collector as it was after."""

from __future__ import annotations

import gc

import pytest

from newsletter.core.heap import loading


def test_loading_collects_nothing_and_restores_the_collector() -> None:
    assert gc.isenabled()
    collections: list[str] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(phase)

    gc.callbacks.append(count)
    try:
        with loading():
            assert not gc.isenabled()
            collections.clear()  # one may have run just before
            kept = [[] for _ in range(50_000)]  # enough live containers for young collections
            during = len(collections)
        assert during == 0 and len(kept) == 50_000
        assert gc.isenabled()
        with pytest.raises(RuntimeError), loading():  # a failed start-up restores it too
            raise RuntimeError("bad setting")
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(count)


def test_loading_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with loading():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
