"""core.heap.loading: no collections while a command loads its modules, what it loaded frozen, the
collector as it was after."""

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
        gc.unfreeze()


def test_loading_freezes_what_it_loaded_and_a_failed_start_up_nothing() -> None:
    """The tick's first young collection after its start-up walked every loaded object once
    more (~40 ms before its first request); frozen, the count starts again at zero."""
    before = gc.get_freeze_count()
    try:
        with loading():
            kept = [[] for _ in range(50_000)]
        assert gc.get_freeze_count() >= before + 50_000
        assert gc.get_count()[0] < 1_000 and len(kept) == 50_000
        frozen = gc.get_freeze_count()
        with pytest.raises(RuntimeError), loading():
            more = [[] for _ in range(50_000)]
            raise RuntimeError(f"bad setting ({len(more)})")
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_loading_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with loading():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
